"""COCO-Stuff 2017's sky, read with pycocotools (Caesar et al. 2018).

The binary sky mask of an image is the union of the "sky" supercategory's two stuff
categories, clouds (106) and sky-other (157). Sky fractions come from the annotation file
alone (RLE areas), so Figure 7 on real data needs only stuff_annotations_trainval2017.zip.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import default_root
from .sky_common import BIG_THRESHOLD, SELECTIONS, SkyBatch, check_indices, check_threshold

SKY_CATEGORY_IDS = (106, 157)  # COCO-Stuff's "sky" supercategory: clouds, sky-other
COCO_SIZE = (426, 640)  # (height, width) the successor resized to, ignoring aspect
SELECTION_MEANING = {"all": "every image", "any": "images with clouds or sky-other",
                     "both": "images with clouds and sky-other"}
SKY_CATEGORY_NAMES = {106: "clouds", 157: "sky-other"}
STUFF_URL = "http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/"
IMAGES_URL = "http://images.cocodataset.org/zips/"
STUFF_ZIP = "stuff_annotations_trainval2017.zip"
EXPECTED = (f"a COCO-Stuff 2017 stuff annotation file (stuff_train2017.json or "
            f"stuff_val2017.json, from {STUFF_ZIP}): a JSON object whose 'annotations' are RLE "
            f"masks of stuff categories 92-183, clouds (106) and sky-other (157) among them")


class CocoFormatError(ValueError):
    """A file that is not what the COCO-Stuff loader needs; the message names it."""


def read_stuff_annotations(path: str | os.PathLike) -> dict:
    """The JSON of a COCO-Stuff stuff annotation file, checked to be one.

    Refused with a message that names the file and says what it is instead: a folder, a
    truncated or non-JSON file, a results list, a COCO instances or panoptic file, a file
    whose categories 106 and 157 are not clouds and sky-other.
    """
    path = Path(path)
    if path.is_dir():
        raise CocoFormatError(f"{path} is a folder; expected the file itself, {EXPECTED}")
    if not path.is_file():
        raise FileNotFoundError(
            f"COCO-Stuff annotations not found at {path}. Download {STUFF_URL}{STUFF_ZIP} "
            "(about 401 MB) and unzip it; it holds stuff_train2017.json and "
            f"stuff_val2017.json. The images (needed for training, not for sky fractions) are "
            f"{IMAGES_URL}train2017.zip and val2017.zip; or pass download=True to the sky "
            "notebooks (f1lib.data.coco_download), which fetches only the images needed.")
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CocoFormatError(f"{path} is not valid JSON ({err}): truncated or damaged? "
                              f"Download it again. Expected {EXPECTED}") from None
    if isinstance(data, list):
        raise CocoFormatError(f"{path} holds a JSON list, as a COCO results file does, not "
                              f"annotations. Expected {EXPECTED}")
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise CocoFormatError(f"{path} lacks COCO's 'images', 'annotations' and 'categories' "
                              f"(it has {found}). Expected {EXPECTED}")
    annotations = data["annotations"]
    if annotations and "segments_info" in annotations[0]:
        raise CocoFormatError(f"{path} is a COCO panoptic file (its annotations are PNG "
                              f"segments, sky as 'sky-other-merged'). Expected {EXPECTED}")
    names = {c.get("id"): c.get("name") for c in data["categories"]}
    if any(names.get(i) != name for i, name in SKY_CATEGORY_NAMES.items()):
        kind = ("a COCO instances (things) file" if names and max(map(int, names)) <= 91
                else "not COCO-Stuff")
        found = {i: names.get(i) for i in SKY_CATEGORY_NAMES}
        raise CocoFormatError(f"{path} is {kind}: its categories 106 and 157 are {found}, "
                              f"not clouds and sky-other. Expected {EXPECTED}")
    for k, annotation in enumerate(annotations):
        if not {"id", "image_id", "category_id", "segmentation"} <= set(annotation):
            raise CocoFormatError(f"{path}: annotation {k} lacks one of id, image_id, "
                                  f"category_id, segmentation. Expected {EXPECTED}")
    return data


def read_image(path: Path) -> "PIL.Image.Image":  # noqa: F821
    """The RGB image at `path`, decoded in full; a missing, truncated or undecodable file is
    named in the error, with what to do."""
    from PIL import Image

    if path.is_dir():
        raise CocoFormatError(f"{path} is a folder, not an image")
    if not path.is_file():
        raise FileNotFoundError(
            f"image {path} not found: unzip {IMAGES_URL}{path.parent.name}.zip into "
            f"{path.parent.parent}, or pass download=True to the sky notebooks, which "
            "fetches the images that the selection needs (f1lib.data.coco_download)")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # decodes every pixel: a truncated file fails here
    except (OSError, SyntaxError, ValueError) as err:
        raise CocoFormatError(f"image {path} cannot be decoded ({err}): delete it and fetch it "
                              "again (download=True checks and refetches damaged images)") from None


def default_stuff_annotations(split: str = "train") -> Path:
    """Where COCO-Stuff's stuff_<split>2017.json is looked for: $F1LIB_COCO if set,
    else <$F1LIB_DATA or ~/.cache/f1lib>/cocostuff."""
    folder = Path(os.environ.get("F1LIB_COCO") or default_root() / "cocostuff")
    return folder / f"stuff_{split}2017.json"


class CocoStuffSky:
    """Sky vs background from COCO-Stuff 2017's stuff annotations.

    Args:
        annotation_file: stuff_train2017.json or stuff_val2017.json.
        image_dir: the matching train2017/ or val2017/ folder; needed by
            `batch` only, not by `fractions`.
        selection: which images: "any" (default) those with some sky, "all"
            every image, "both" those with clouds AND sky-other, the
            successor's `getImgIds(catIds=[106, 157])` (pycocotools intersects).
        size: (height, width) of the images and masks `batch` returns; the
            successor's 426 x 640 by default (aspect ignored, as there).
        threshold: sky fraction from which an image is "big".
    """

    def __init__(self, annotation_file: str | os.PathLike,
                 image_dir: str | os.PathLike | None = None,
                 selection: str = "any", size: tuple[int, int] = COCO_SIZE,
                 threshold: float = BIG_THRESHOLD):
        annotation_file = Path(annotation_file)
        if selection not in SELECTIONS:
            raise ValueError(f"unknown selection {selection!r}; expected one of {SELECTIONS}")
        check_threshold(threshold)
        try:
            from pycocotools import mask as mask_utils
            from pycocotools.coco import COCO
        except ImportError as err:
            raise ImportError("COCO-Stuff needs pycocotools: pip install pycocotools") from err
        if image_dir is not None and Path(image_dir).is_file():
            raise NotADirectoryError(f"image_dir {image_dir} is a file; expected the folder of "
                                     "images (train2017/ or val2017/)")
        data = read_stuff_annotations(annotation_file)
        self._mask_utils = mask_utils
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its timings
            self.coco.createIndex()
        sky_images = [set(self.coco.catToImgs.get(c, [])) for c in SKY_CATEGORY_IDS]
        if selection == "all":
            ids = self.coco.getImgIds()
        elif selection == "any":
            ids = set.union(*sky_images)
        else:
            ids = self.coco.getImgIds(catIds=list(SKY_CATEGORY_IDS))
        self.image_ids = sorted(ids)
        if not self.image_ids:
            raise ValueError(f"{annotation_file}: no image in selection {selection!r} "
                             f"({SELECTION_MEANING[selection]}); 'any' takes every image with "
                             "some sky")
        self.annotation_file = annotation_file
        self.image_dir = Path(image_dir) if image_dir is not None else None
        self.selection = selection
        self.size = tuple(size)
        self.threshold = threshold
        self._fractions: Tensor | None = None

    def __len__(self) -> int:
        return len(self.image_ids)

    def _sky_rle(self, image_id: int):
        info = self.coco.imgs[image_id]
        ann_ids = self.coco.getAnnIds(imgIds=[image_id], catIds=list(SKY_CATEGORY_IDS))
        rles = [self.coco.annToRLE(a) for a in self.coco.loadAnns(ann_ids)]
        if not rles:
            return None, info
        return self._mask_utils.merge(rles, intersect=False), info

    def fractions(self) -> Tensor:
        """The sky fraction of every selected image, from the annotations alone."""
        if self._fractions is None:
            out = []
            for image_id in self.image_ids:
                rle, info = self._sky_rle(image_id)
                area = 0 if rle is None else float(self._mask_utils.area(rle))
                out.append(area / (info["height"] * info["width"]))
            self._fractions = torch.tensor(out, dtype=torch.float32)
        return self._fractions

    def full_mask(self, i: int) -> Tensor:
        """The sky mask of image i at its original resolution."""
        rle, info = self._sky_rle(self.image_ids[i])
        if rle is None:
            return torch.zeros(info["height"], info["width"], dtype=torch.bool)
        return torch.from_numpy(self._mask_utils.decode(rle).astype(bool))

    def batch(self, indices) -> SkyBatch:
        """Images and masks resized to `size`; fractions from the full-resolution masks."""
        if self.image_dir is None:
            raise ValueError(
                "CocoStuffSky.batch needs image_dir (the train2017/ or val2017/ folder)")
        index = check_indices(indices, len(self))
        if not index.numel():
            raise ValueError(f"no images selected from {self.annotation_file}")
        height, width = self.size
        images, masks = [], []
        for i in index.tolist():
            path = self.image_dir / self.coco.imgs[self.image_ids[i]]["file_name"]
            rgb = read_image(path).resize((width, height), resample=2)  # PIL's BILINEAR
            images.append(torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1))
            full = self.full_mask(i)[None, None].float()
            masks.append(F.interpolate(full, size=(height, width), mode="nearest")[0, 0].bool())
        fractions = self.fractions()[index]
        return SkyBatch(torch.stack(images), torch.stack(masks), fractions,
                        fractions >= self.threshold, index)
