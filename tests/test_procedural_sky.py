"""The procedural sky scenes: a pure function of (seed, index), masks that are exactly the
sky painted, fractions shaped like COCO-Stuff's, and scenes with what makes photos hard."""

import numpy as np
import pytest
import torch

from f1lib.data.procedural_paint import compress, paint
from f1lib.data.procedural_sky import ProceduralSky
from f1lib.data.sky import images_per_chunk, load_batches
from f1lib.data.sky_common import (COCO_SKY_HISTOGRAM, COCO_STUFF_TRAIN,
                                   coco_fraction_quantile, coco_histogram_distance)

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
    scenes = sky.draw(index)
    mask, objects = sky.masks(scenes, sky.ground_line(scenes))
    # paint the sky NaN: exactly the sky pixels come out NaN, through every later layer
    # (leaves, people, fog, exposure and sensor noise); compression, blockwise, comes after
    image = paint(scenes, mask, objects, sky_paint=torch.tensor(float("nan")))
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


def test_the_histogram_is_cocos_published_distribution():
    # COCO-Stuff's published statistics, not the histogram under test: 3,654 images, 519 of
    # them big; mean 0.362, sd 0.218; quantiles 10-90%
    counts = np.asarray(COCO_SKY_HISTOGRAM)
    assert counts.sum() == COCO_STUFF_TRAIN["images"] == 3654
    assert counts[6:].sum() == COCO_STUFF_TRAIN["big"] == 519
    draws = coco_fraction_quantile(np.linspace(0, 1, 200_001)[1:-1])
    assert abs(draws.mean() - 0.362) < 0.005 and abs(draws.std() - 0.218) < 0.005
    for level, value in {0.10: 0.095, 0.25: 0.198, 0.50: 0.339, 0.75: 0.487}.items():
        assert abs(np.quantile(draws, level) - value) < 0.01, level
    assert coco_histogram_distance(draws) < 1e-3
    assert coco_histogram_distance(np.full(10, 0.95)) == pytest.approx(2 - 2 * 85 / 3654)


def test_sky_fractions_follow_cocos_histogram():
    # 4,000 images: the histogram's L1 distance to COCO-Stuff's under 0.05 (the chapter's
    # bound on 20,000) and the big share within a point of COCO-Stuff's published 14.2%
    fractions = ProceduralSky(4000, size=(48, 64)).fractions().numpy()
    assert coco_histogram_distance(fractions) < 0.05
    assert abs((fractions >= 0.6).mean() - 0.142) < 0.015
    assert abs(fractions.mean() - 0.362) < 0.02 and abs(fractions.std() - 0.218) < 0.02


def test_scenes_hold_what_makes_photos_hard():
    # among 300 scenes: canopies whose gaps show sky, people, tilted horizons, windows,
    # water, compressed images; the sky seen through a canopy's gaps is sky in the mask
    sky = ProceduralSky(300, size=(48, 64), seed=5)
    scenes = sky.draw(torch.arange(300))
    mask, objects = sky.masks(scenes, sky.ground_line(scenes))
    leaves = scenes.occluder_kind == 2
    with_canopy = leaves.flatten(1).any(1)
    assert with_canopy.sum() >= 20
    rows = leaves.any(2)  # a gap: sky in a row that also holds leaves
    gaps = (mask & rows[:, :, None]).flatten(1).any(1)
    assert (gaps & with_canopy).sum() >= 10
    assert not (mask & scenes.occluder).any()
    assert (scenes.occluder_kind >= 3).flatten(1).any(1).sum() >= 20  # people
    assert (scenes.ground[:, -1] - scenes.ground[:, 0]).abs().gt(3).sum() >= 100  # tilted


def test_compression_works_on_each_images_own_blocks():
    sky = ProceduralSky(64, size=(40, 56), seed=1)  # not a multiple of 8: padded, then cut
    scenes = sky.draw(torch.arange(64))
    plain = (paint(scenes, *sky.masks(scenes, sky.ground_line(scenes))).clamp(0, 1) * 255).round()
    out = compress(plain, scenes)
    changed = (out != plain).flatten(1).any(1)
    assert 16 <= changed.sum() <= 48  # about half the images are compressed
    assert out.shape == plain.shape and out.min() >= 0 and out.max() <= 255
    # a flat 8 x 8 block stays flat: the DCT of a constant is its DC term alone, which
    # quantization moves by at most half its step (16 x IJG's factor at quality 15: 53)
    blocks = compress(torch.full((64, 3, 40, 56), 77.0), scenes).unfold(2, 8, 8).unfold(3, 8, 8)
    assert torch.equal(blocks.amax(dim=(-2, -1)), blocks.amin(dim=(-2, -1)))
    assert (blocks - 77).abs().max() <= 27
    # the same image alone or in a batch: bit for bit
    one = compress(plain[5:6], sky.draw(torch.tensor([5])))
    assert torch.equal(one[0], out[5])


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="positive integer"):
        ProceduralSky(0)
    with pytest.raises(ValueError, match="size"):
        ProceduralSky(10, size=(8, 8))
    with pytest.raises(ValueError, match="threshold"):
        ProceduralSky(10, threshold=1.5)
    with pytest.raises(IndexError):
        ProceduralSky(10).batch([10])


def test_the_l1_distance_of_a_perfect_imitation_shrinks_as_one_over_root_n():
    from f1lib.sky_claims import sampling_distance

    # 3,654 draws from COCO-Stuff's own histogram: 95% within 0.054 (measured independently
    # by multinomial draws); four times as many images, half as far
    assert abs(sampling_distance(3654) - 0.054) < 0.003
    assert sampling_distance(4 * 3654) == pytest.approx(sampling_distance(3654) / 2, rel=0.08)
    assert sampling_distance(3654, level=0.5) < sampling_distance(3654)
