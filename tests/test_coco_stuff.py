"""The COCO-Stuff loader, on COCO-format files written here: sky fractions against hand
counts, and every file of the wrong kind refused with a message that names it."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from f1lib.data.coco_stuff import CocoFormatError, CocoStuffSky
from f1lib.data.sky import load_batches

from coco_files import H, W, instances_file, panoptic_file, stuff_file


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


def test_an_empty_selection_is_the_loaders_own_error(tmp_path):
    path, _ = stuff_file(tmp_path)
    sky = CocoStuffSky(path, selection="any")
    with pytest.raises(ValueError, match=f"no images selected from {path}"):
        load_batches(sky, [])
    data = json.loads(path.read_text())  # no image with clouds: "both" selects nothing
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] != 106]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"stuff_val2017.json: no image in selection 'both'"):
        CocoStuffSky(path, selection="both")


@pytest.mark.parametrize("make, message", [
    (instances_file, r"instances_train2017\.json is a COCO instances \(things\) file"),
    (panoptic_file, r"panoptic_train2017\.json is a COCO panoptic file"),
])
def test_files_of_the_wrong_kind_are_refused_with_the_format_expected(tmp_path, make, message):
    with pytest.raises(CocoFormatError, match=message) as error:
        CocoStuffSky(make(tmp_path))
    assert "Expected a COCO-Stuff 2017 stuff annotation file" in str(error.value)


def test_truncated_json_a_results_list_and_a_folder_are_named(tmp_path):
    path, _ = stuff_file(tmp_path)
    text = path.read_text()
    path.write_text(text[:len(text) // 2])
    with pytest.raises(CocoFormatError, match=r"stuff_val2017\.json is not valid JSON.*trunc"):
        CocoStuffSky(path)
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": 1, "category_id": 106, "score": 0.9}]))
    with pytest.raises(CocoFormatError, match=r"results\.json holds a JSON list"):
        CocoStuffSky(results)
    with pytest.raises(CocoFormatError, match=f"{tmp_path} is a folder; expected the file"):
        CocoStuffSky(tmp_path)
    renamed = json.loads(text)
    renamed["categories"][0]["name"] = "fog"  # id 106 is not clouds: not COCO-Stuff's ids
    path.write_text(json.dumps(renamed))
    with pytest.raises(CocoFormatError, match="not clouds and sky-other"):
        CocoStuffSky(path)


def test_an_image_dir_that_is_a_file_and_a_damaged_image_are_named(tmp_path):
    path, _ = stuff_file(tmp_path)
    not_a_folder = tmp_path / "val2017.zip"
    not_a_folder.write_bytes(b"PK")
    with pytest.raises(NotADirectoryError, match=r"val2017\.zip is a file"):
        CocoStuffSky(path, not_a_folder)
    images = tmp_path / "val2017"
    images.mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(images / "000000000001.png")
    whole = (images / "000000000001.png").read_bytes()
    (images / "000000000001.png").write_bytes(whole[:len(whole) // 2])
    sky = CocoStuffSky(path, images, size=(10, 15))
    with pytest.raises(CocoFormatError, match=r"000000000001\.png cannot be decoded"):
        sky.batch([0])
    with pytest.raises(FileNotFoundError, match=r"000000000002\.png not found.*download=True"):
        sky.batch([1])
