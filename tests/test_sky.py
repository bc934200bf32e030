"""Sky data: the COCO-Stuff loader on a COCO-format file written here, and the procedural set."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import stats

from f1lib.data.sky import COCO_BETA, CocoStuffSky, ProceduralSky, images_per_chunk, load_batches

H, W = 20, 30


def rle(mask: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in encoded["size"]], "counts": encoded["counts"].decode()}


def stuff_file(tmp_path):
    """Three images: 1 has clouds and sky-other (overlapping), 2 sky-other only, 3 no sky."""
    clouds = np.zeros((H, W), bool)
    clouds[:5, :] = True  # 150 pixels
    sky_other = np.zeros((H, W), bool)
    sky_other[3:8, :10] = True  # 50 pixels, 20 of them also clouds
    sky_only = np.zeros((H, W), bool)
    sky_only[:15, :] = True  # 450 pixels
    grass = ~sky_only
    annotations = []
    for k, (image_id, category, mask) in enumerate([
            (1, 106, clouds), (1, 157, sky_other), (1, 123, ~(clouds | sky_other)),
            (2, 157, sky_only), (2, 123, grass), (3, 123, np.ones((H, W), bool))]):
        annotations.append({"id": k + 1, "image_id": image_id, "category_id": category,
                            "segmentation": rle(mask), "area": int(mask.sum()),
                            "bbox": [0, 0, W, H], "iscrowd": 0})
    data = {
        "images": [{"id": i, "file_name": f"{i:012d}.png", "height": H, "width": W}
                   for i in (1, 2, 3)],
        "categories": [{"id": 106, "name": "clouds", "supercategory": "sky"},
                       {"id": 157, "name": "sky-other", "supercategory": "sky"},
                       {"id": 123, "name": "grass", "supercategory": "plant"}],
        "annotations": annotations,
    }
    path = tmp_path / "stuff_val2017.json"
    path.write_text(json.dumps(data))
    return path, clouds | sky_other


def test_fractions_are_the_union_of_clouds_and_sky_other(tmp_path):
    path, union = stuff_file(tmp_path)
    sky = CocoStuffSky(path, selection="all")
    assert sky.image_ids == [1, 2, 3]
    # image 1: 150 + 50 - 20 shared = 180 of 600 pixels; image 2: 450; image 3: none
    assert sky.fractions().tolist() == pytest.approx([180 / 600, 450 / 600, 0.0])
    assert torch.equal(sky.full_mask(0), torch.from_numpy(union))
    assert not sky.full_mask(2).any()


def test_selections_any_all_and_the_originals_both(tmp_path):
    path, _ = stuff_file(tmp_path)
    assert CocoStuffSky(path).image_ids == [1, 2]  # default: images with some sky
    assert CocoStuffSky(path, selection="both").image_ids == [1]  # clouds AND sky-other
    assert len(CocoStuffSky(path, selection="all")) == 3
    with pytest.raises(ValueError, match="unknown selection"):
        CocoStuffSky(path, selection="either")


def test_batches_resize_images_and_masks_and_label_big_images(tmp_path):
    path, union = stuff_file(tmp_path)
    images = tmp_path / "val2017"
    images.mkdir()
    for i in (1, 2):
        pixels = np.full((H, W, 3), 40 * i, np.uint8)
        Image.fromarray(pixels).save(images / f"{i:012d}.png")
    sky = CocoStuffSky(path, images, size=(10, 15), threshold=0.6)
    batch = sky.batch([1, 0])
    assert batch.images.shape == (2, 3, 10, 15) and batch.images.dtype == torch.uint8
    assert (batch.images[0] == 80).all() and (batch.images[1] == 40).all()
    assert torch.equal(batch.masks[1], torch.from_numpy(union[::2, ::2]))  # nearest, x 1/2
    assert batch.fractions.tolist() == pytest.approx([0.75, 0.3])
    assert batch.big.tolist() == [True, False]
    assert batch.index.tolist() == [1, 0]
    with pytest.raises(IndexError):
        sky.batch([2])
    with pytest.raises(ValueError, match="image_dir"):
        CocoStuffSky(path).batch([0])


def test_missing_annotations_say_what_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="stuff_annotations_trainval2017.zip"):
        CocoStuffSky(tmp_path / "stuff_train2017.json")


# ------------------------------------------------------------------ procedural
def test_an_image_depends_on_its_index_and_seed_only():
    sky = ProceduralSky(50, size=(48, 64))
    pair = sky.batch([7, 3])
    alone = sky.batch([3])
    assert torch.equal(pair.images[1], alone.images[0])
    assert torch.equal(pair.masks[1], alone.masks[0])
    assert not torch.equal(pair.images[0], pair.images[1])
    other_seed = ProceduralSky(50, size=(48, 64), seed=1).batch([3])
    assert not torch.equal(other_seed.images[0], alone.images[0])


def test_the_mask_is_exactly_the_pixels_painted_as_sky():
    sky = ProceduralSky(40, size=(48, 64))
    index = torch.arange(40)
    scenes = sky._draw(index)
    mask, objects = sky._masks(scenes, sky._ground_line(scenes))
    # paint the sky NaN: exactly the sky pixels come out NaN, through every later layer
    image = sky._paint(scenes, mask, objects, sky_paint=torch.tensor(float("nan")))
    assert torch.equal(image.isnan().any(dim=1), mask)
    batch = sky.batch(index)
    assert torch.equal(batch.masks, mask)
    assert torch.allclose(batch.fractions, mask.float().mean(dim=(1, 2)))
    assert torch.equal(batch.big, batch.fractions >= 0.6)
    assert mask.any() and (~mask).any()


def test_fractions_without_painting_match_the_batches():
    sky = ProceduralSky(30, size=(48, 64), seed=3)
    assert torch.equal(sky.fractions(chunk=7), sky.batch(range(30)).fractions)


def test_scenes_are_painted_in_chunks_that_change_nothing_but_the_speed():
    # 8 MiB over 3 x 128 x 192 float32 = 294,912 bytes an image
    assert images_per_chunk((128, 192)) == 28
    assert images_per_chunk((32, 48)) == 64  # 455 would fit: the cap holds
    assert images_per_chunk((4096, 4096)) == 1
    sky = ProceduralSky(60, size=(128, 192), seed=2)
    chunked = load_batches(sky)  # three chunks: 28, 28 and 4
    whole = sky.batch(range(60))
    for field in ("images", "masks", "fractions", "big", "index"):
        assert torch.equal(getattr(chunked, field), getattr(whole, field)), field


def test_sky_fractions_follow_cocos_beta():
    # 2,000 images: the KS distance to Beta(1.40, 2.47) under 0.04 (the 5% critical value
    # for n = 2000 is 0.030; the target is hit to a pixel row, occluders cap the top end)
    fractions = ProceduralSky(2000, size=(64, 96)).fractions().numpy()
    target = stats.beta(*COCO_BETA)
    assert stats.kstest(fractions, target.cdf).statistic < 0.04
    assert abs((fractions >= 0.6).mean() - target.sf(0.6)) < 0.03
    assert abs(fractions.mean() - target.mean()) < 0.02


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="positive integer"):
        ProceduralSky(0)
    with pytest.raises(ValueError, match="size"):
        ProceduralSky(10, size=(8, 8))
    with pytest.raises(ValueError, match="threshold"):
        ProceduralSky(10, threshold=1.5)
    with pytest.raises(IndexError):
        ProceduralSky(10).batch([10])
