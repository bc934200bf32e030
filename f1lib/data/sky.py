"""Sky data for the paper's segmentation experiment: COCO-Stuff, and a procedural stand-in.

Both sources (`f1lib.data.coco_stuff.CocoStuffSky`, `f1lib.data.procedural_sky.ProceduralSky`)
answer `batch(indices)` with a `SkyBatch` (images, masks, sky fractions, big labels, dataset
indices) and `fractions()` with every image's sky fraction, so that training and Figure 7
need not know which. This module picks the source (`sky_datasets`) and loads a selection
in chunks (`load_batches`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .coco_stuff import (COCO_SIZE, IMAGES_URL, SKY_CATEGORY_IDS, STUFF_URL, CocoStuffSky,
                         default_stuff_annotations)
from .procedural_sky import ProceduralSky
from .sky_common import (BIG_THRESHOLD, COCO_SKY_HISTOGRAM, COCO_STUFF_TRAIN, SELECTIONS,
                         SkyBatch, check_indices, coco_histogram_distance, histogram_shares,
                         sample_indices)

# Scenes are painted at most this many bytes of float32 RGB images at a time: ProceduralSky's
# whole-image operations then work in the CPU's cache (images_per_chunk).
CHUNK_BYTES = 8 << 20


def images_per_chunk(size: tuple[int, int]) -> int:
    """How many images of `size` to paint at a time: as many as fill `CHUNK_BYTES` with
    float32 RGB maps, and at most 64, as each also samples 256 x 256 textures, whatever
    its size."""
    height, width = size
    return max(1, min(64, CHUNK_BYTES // (3 * height * width * 4)))


def load_batches(dataset, indices=None, chunk: int | None = None) -> SkyBatch:
    """Images `indices` (default: all) of either source as one SkyBatch, made
    `chunk` images at a time (default: `images_per_chunk(dataset.size)`), with a
    progress bar (`f1lib.progress`). Each image depends on its index alone, so the
    chunks change nothing but the speed."""
    from ..progress import progress_bar

    index = check_indices(range(len(dataset)) if indices is None else indices, len(dataset))
    if not index.numel():
        source = getattr(dataset, "annotation_file", None) or type(dataset).__name__
        raise ValueError(f"no images selected from {source}")
    chunk = chunk or images_per_chunk(dataset.size)
    parts = [dataset.batch(part) for part in progress_bar(index.split(chunk), desc="sky images")]
    return SkyBatch(*(torch.cat([getattr(p, f) for p in parts])
                      for f in ("images", "masks", "fractions", "big", "index")))


SOURCES = ("auto", "procedural", "coco")
PROCEDURAL_TEST_SEED_OFFSET = 1_000_000  # test scenes never repeat a training scene


def sky_datasets(source: str = "auto", size: tuple[int, int] = (128, 192), n_train: int = 0,
                 n_test: int = 0, seed: int = 0, threshold: float = BIG_THRESHOLD,
                 coco_annotations: str | os.PathLike | None = None,
                 coco_images: str | os.PathLike | None = None, selection: str = "both"):
    """(train set, test set, train indices, test indices, description) from `source`.

    "coco": COCO-Stuff train and val, needing stuff_{train,val}2017.json in
    `coco_annotations` (default: where `default_stuff_annotations` looks) and
    train2017/ and val2017/ in `coco_images` (default: the same folder).
    "procedural": ProceduralSky, n_train and n_test scenes (0: COCO-Stuff's
    3,654 train images of the successor's selection, and 500). "auto": COCO-Stuff
    when all of it is there, else procedural. n_train / n_test > 0 caps COCO too.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown sky source {source!r}; expected one of {SOURCES}")
    annotations = Path(coco_annotations) if coco_annotations else default_stuff_annotations().parent
    images = Path(coco_images) if coco_images else annotations
    needed = [annotations / "stuff_train2017.json", annotations / "stuff_val2017.json",
              images / "train2017", images / "val2017"]
    have_coco = all(p.exists() for p in needed)
    if source == "coco" and not have_coco:
        missing = ", ".join(str(p) for p in needed if not p.exists())
        raise FileNotFoundError(
            f"COCO-Stuff is incomplete, missing: {missing}. Unzip "
            f"{STUFF_URL}stuff_annotations_trainval2017.zip and {IMAGES_URL}train2017.zip / "
            "val2017.zip there (or pass coco_annotations= and coco_images=); source='procedural' "
            "works offline.")
    if source == "coco" or (source == "auto" and have_coco):
        train = CocoStuffSky(needed[0], needed[2], selection, size, threshold)
        test = CocoStuffSky(needed[1], needed[3], selection, size, threshold)
        description = (f"COCO-Stuff 2017 ({selection!r} selection): {len(train):,} train and "
                       f"{len(test):,} val images from {annotations}")
        train_idx = range(min(n_train, len(train)) if n_train else len(train))
        test_idx = range(min(n_test, len(test)) if n_test else len(test))
        return train, test, train_idx, test_idx, description
    n_train = n_train or COCO_STUFF_TRAIN["images"]
    n_test = n_test or 500
    train = ProceduralSky(n_train, size, seed, threshold)
    test = ProceduralSky(n_test, size, seed + PROCEDURAL_TEST_SEED_OFFSET, threshold)
    why = "" if source == "procedural" else (
        f" (auto: COCO-Stuff is not complete under {annotations}; see sky_datasets)")
    description = (f"procedural sky scenes (synthetic, f1lib.data.sky.ProceduralSky): {n_train:,} "
                   f"train (seed {seed}) and {n_test:,} test (seed "
                   f"{seed + PROCEDURAL_TEST_SEED_OFFSET}){why}")
    return train, test, range(n_train), range(n_test), description
