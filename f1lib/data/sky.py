"""Sky data for the seed's segmentation experiment: COCO-Stuff, and a procedural stand-in.

Both sources answer `batch(indices)` with a `SkyBatch` (images, masks, sky
fractions, big labels, dataset indices) and `fractions()` with every
image's sky fraction, so that training and Figure 7 need not know which.

COCO-Stuff 2017 (Caesar et al. 2018), read with pycocotools: the binary sky
mask is the union of the "sky" supercategory, clouds (106) and sky-other
(157). Sky fractions come from the annotation file alone (RLE areas), so
Figure 7 on real data needs only stuff_annotations_trainval2017.zip.

The procedural set (`ProceduralSky`) is the offline default: image i is
always the same image (its scene is drawn from a generator seeded by
(seed, i)), its mask is exactly the pixels painted as sky, and its sky
fraction is drawn from the Beta(1.40, 2.47) that moment-matches COCO-Stuff's
train distribution (mean 0.362, sd 0.218; REFERENCE.md), so that about 14% of
the images are "big" (fraction >= 0.6), as in COCO-Stuff's 14.2%.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import Tensor

from . import default_root

SKY_CATEGORY_IDS = (106, 157)  # COCO-Stuff's "sky" supercategory: clouds, sky-other
BIG_THRESHOLD = 0.6
COCO_SIZE = (426, 640)  # (height, width) the successor resized to, ignoring aspect
COCO_BETA = (1.40, 2.47)  # moment fit of COCO-Stuff train sky fractions (both categories)
# Scenes are painted at most this many bytes of float32 RGB images at a time: ProceduralSky's
# whole-image operations then work in the CPU's cache (images_per_chunk).
CHUNK_BYTES = 8 << 20
SELECTIONS = ("all", "any", "both")
# COCO-Stuff 2017 train, the successor's selection (images with both sky categories):
# statistics of the sky fraction as REFERENCE.md records them
COCO_STUFF_TRAIN = {
    "images": 3654, "mean": 0.362, "sd": 0.218, "big": 519, "big_share": 0.142,
    "quantiles": {0.10: 0.095, 0.25: 0.198, 0.50: 0.339, 0.75: 0.487, 0.90: 0.665},
}
STUFF_URL = "http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/"
IMAGES_URL = "http://images.cocodataset.org/zips/"


def default_stuff_annotations(split: str = "train") -> Path:
    """Where COCO-Stuff's stuff_<split>2017.json is looked for: $F1LIB_COCO if set,
    else <$F1LIB_DATA or ~/.cache/f1lib>/cocostuff."""
    folder = Path(os.environ.get("F1LIB_COCO") or default_root() / "cocostuff")
    return folder / f"stuff_{split}2017.json"


@dataclass
class SkyBatch:
    """Images with their sky masks; row k is dataset index index[k]."""

    images: Tensor  # (B, 3, H, W) uint8
    masks: Tensor  # (B, H, W) bool, True on sky
    fractions: Tensor  # (B,) float32, the share of sky pixels
    big: Tensor  # (B,) bool, fraction >= threshold
    index: Tensor  # (B,) int64

    def __len__(self) -> int:
        return self.images.shape[0]


def sample_indices(big, samples: int) -> Tensor:
    """Which images a figure of samples shows: the first big ones and the first small ones
    in the set's order, half of each, the big first; where one kind runs short the other
    fills in. `big`: (N,) bool, array or tensor."""
    if samples < 0:
        raise ValueError(f"samples must be >= 0, got {samples}")
    big = torch.as_tensor(big, dtype=torch.bool).cpu().reshape(-1)
    positives, negatives = big.nonzero().flatten(), (~big).nonzero().flatten()
    n_big = min(len(positives), (samples + 1) // 2)
    n_small = min(len(negatives), samples - n_big)
    n_big = min(len(positives), samples - n_small)
    return torch.cat([positives[:n_big], negatives[:n_small]])


def _check_indices(indices, n: int) -> Tensor:
    index = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
        raise IndexError(f"indices must be in [0, {n}), got min {int(index.min())}, "
                         f"max {int(index.max())}")
    return index


# ------------------------------------------------------------------ COCO-Stuff
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
        if not annotation_file.is_file():
            raise FileNotFoundError(
                f"COCO-Stuff annotations not found at {annotation_file}. Download "
                f"{STUFF_URL}stuff_annotations_trainval2017.zip (about 401 MB) and unzip it; it "
                "holds stuff_train2017.json and stuff_val2017.json. The images (needed for "
                f"training, not for sky fractions) are {IMAGES_URL}train2017.zip and val2017.zip."
            )
        if selection not in SELECTIONS:
            raise ValueError(f"unknown selection {selection!r}; expected one of {SELECTIONS}")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        try:
            from pycocotools import mask as mask_utils
            from pycocotools.coco import COCO
        except ImportError as err:
            raise ImportError("COCO-Stuff needs pycocotools: pip install pycocotools") from err
        self._mask_utils = mask_utils
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its timings
            self.coco = COCO(str(annotation_file))
        sky_images = [set(self.coco.catToImgs.get(c, [])) for c in SKY_CATEGORY_IDS]
        if selection == "all":
            ids = self.coco.getImgIds()
        elif selection == "any":
            ids = set.union(*sky_images)
        else:
            ids = self.coco.getImgIds(catIds=list(SKY_CATEGORY_IDS))
        self.image_ids = sorted(ids)
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
        from PIL import Image

        index = _check_indices(indices, len(self))
        height, width = self.size
        images, masks = [], []
        for i in index.tolist():
            path = self.image_dir / self.coco.imgs[self.image_ids[i]]["file_name"]
            if not path.is_file():
                raise FileNotFoundError(
                    f"image {path} not found: unzip {IMAGES_URL}"
                    f"{self.image_dir.name}.zip into {self.image_dir.parent}")
            with Image.open(path) as im:
                rgb = im.convert("RGB").resize((width, height), Image.BILINEAR)
            images.append(torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1))
            full = self.full_mask(i)[None, None].float()
            masks.append(F.interpolate(full, size=(height, width), mode="nearest")[0, 0].bool())
        fractions = self.fractions()[index]
        return SkyBatch(torch.stack(images), torch.stack(masks), fractions,
                        fractions >= self.threshold, index)


# ------------------------------------------------------------- procedural sky
# RGB in [0, 1]. Each time of day: (sky at the top, sky at the horizon, sun, cloud, sun strength)
PALETTES = {
    "day": ((0.20, 0.40, 0.80), (0.66, 0.80, 0.95), (1.00, 0.97, 0.85), (0.97, 0.97, 0.98), 0.6),
    "dawn": ((0.35, 0.45, 0.75), (0.98, 0.72, 0.52), (1.00, 0.85, 0.60), (1.00, 0.80, 0.70), 0.9),
    "dusk": ((0.14, 0.14, 0.40), (0.95, 0.47, 0.35), (1.00, 0.60, 0.30), (0.85, 0.55, 0.55), 0.9),
    "overcast": ((0.58, 0.60, 0.65), (0.80, 0.80, 0.82), (0.95, 0.95, 0.95),
                 (0.72, 0.73, 0.76), 0.1),
    "night": ((0.02, 0.03, 0.10), (0.10, 0.13, 0.27), (0.85, 0.88, 0.95), (0.16, 0.16, 0.22), 0.3),
}
GROUND_TINTS = (  # grass, earth, rock, sand, snow (a bright hard negative)
    (0.35, 0.55, 0.25), (0.55, 0.42, 0.30), (0.50, 0.50, 0.52), (0.80, 0.72, 0.55),
    (0.90, 0.92, 0.95),
)
BLUE_WALL = (0.45, 0.65, 0.90)  # a facade the colour of a clear sky: a hard negative
HORIZONS = ("mountains", "skyline", "trees", "flat")
TEXTURES = ("grass", "gravel", "brick")  # real photographs that scikit-image ships
# One uniform per random choice of a scene, by name
U = {name: k for k, name in enumerate((
    "fraction", "horizon", "amplitude", "palette", "texture", "jitter", "gradient", "sun_x",
    "sun_y", "glow", "cloud_cover", "cloud_opacity", "texture_scale", "texture_x", "texture_y",
    "ground_tint", "blue_wall", "wall_grey", "water", "water_line", "fog", "fog_amount"))}


def _pick(u: Tensor, n: int) -> Tensor:
    """A uniform in [0, 1) as an index in [0, n)."""
    return (u * n).long().clamp(max=n - 1)


@functools.lru_cache(maxsize=1)
def _textures() -> Tensor:
    """(3, 256, 256) grey textures in [0, 1]: scikit-image's grass, gravel and brick."""
    try:
        from skimage import data
    except ImportError as err:
        raise ImportError("the procedural sky's ground textures need scikit-image: "
                          "pip install scikit-image") from err
    stack = torch.stack([torch.from_numpy(getattr(data, name)().astype(np.float32) / 255.0)
                         for name in TEXTURES])
    return F.avg_pool2d(stack[:, None], 2)[:, 0]


def _smooth_noise(grids: list[Tensor], size: tuple[int, int]) -> Tensor:
    """Fractal noise in [0, 1]: octaves of random grids, upsampled and summed
    with halving weights. grids: per octave a (B, h_k, w_k) tensor."""
    total, weight, norm = 0.0, 1.0, 0.0
    for grid in grids:
        total = total + weight * F.interpolate(grid[:, None], size=size, mode="bicubic",
                                               align_corners=False)[:, 0]
        norm += weight
        weight /= 2
    noise = total / norm
    low = noise.amin(dim=(1, 2), keepdim=True)
    high = noise.amax(dim=(1, 2), keepdim=True)
    return (noise - low) / (high - low + 1e-6)


@dataclass
class _Scenes:
    """The random choices behind a batch of scenes, one row per image."""

    target: Tensor  # (B,) sky fraction aimed at
    horizon: Tensor  # (B, W) height of the horizon's objects above the ground line, in pixels
    kind: Tensor  # (B,) index into HORIZONS
    occluder: Tensor  # (B, H, W) bool: poles and wires in front of everything
    u: Tensor  # (B, 24) uniforms, one per choice (see U below)
    cloud_grids: list[Tensor]
    ripple_grids: list[Tensor]
    palette: Tensor  # (B,) index into PALETTES
    texture: Tensor  # (B,) index into TEXTURES


class ProceduralSky:
    """A seeded, procedural sky-segmentation set: the offline stand-in for COCO-Stuff.

    Scenes: a sky gradient with a sun glow and a time-of-day palette; clouds
    of fractal noise (labelled sky, as COCO-Stuff's "clouds" are); a horizon of
    mountain ridges, a skyline, a tree line or a flat plain, with thin poles
    and wires in front; textured ground (scikit-image's real grass, gravel
    and brick photographs). Hard negatives: water that mirrors the sky, walls
    and distant ridges in sky colours, snow, and fog over everything.

    Args:
        n: number of images.
        size: (height, width).
        seed: image i is a function of (seed, i) alone.
        threshold: sky fraction from which an image is "big".
        beta: (a, b) of the Beta distribution of the sky fraction.
    """

    def __init__(self, n: int, size: tuple[int, int] = (128, 192), seed: int = 0,
                 threshold: float = BIG_THRESHOLD, beta: tuple[float, float] = COCO_BETA):
        if not (isinstance(n, int) and n >= 1):
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if len(size) != 2 or min(size) < 16:
            raise ValueError(f"size must be (height, width), each at least 16; got {size!r}")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        self.n, self.size, self.seed = n, (int(size[0]), int(size[1])), seed
        self.threshold, self.beta = threshold, tuple(beta)

    def __len__(self) -> int:
        return self.n

    # ------------------------------------------------------------ the scenes
    def _draw(self, index: Tensor) -> _Scenes:
        height, width = self.size
        per_image = []
        for i in index.tolist():
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
            per_image.append({
                "u": torch.rand(len(U), generator=g),
                "ridge": [torch.rand(1, k + 1, generator=g) for k in (3, 6, 12, 24, 48)],
                "blocks": torch.rand(2, 24, generator=g),
                "bumps": torch.rand(3, 32, generator=g),
                "occluders": torch.rand(4, 4, generator=g),
                "clouds": [torch.rand(k, k + k // 2 + 1, generator=g) for k in (2, 4, 8, 16, 32)],
                "ripple": [torch.rand(k, 2 * k, generator=g) for k in (8, 32)],
            })
        stack = lambda key: torch.stack([p[key] for p in per_image])  # noqa: E731
        u = stack("u")
        kind = _pick(u[:, U["horizon"]], len(HORIZONS))
        x = torch.arange(width, dtype=torch.float32) + 0.5

        # horizon objects: height above the ground line, per column, in pixels
        ridge = _smooth_noise([torch.cat([p["ridge"][k] for p in per_image])[:, None]
                               .expand(-1, 2, -1) for k in range(5)], (2, width))[:, 0]
        amplitude = u[:, U["amplitude"], None]
        mountains = ridge * (0.05 + 0.35 * amplitude) * height
        blocks = stack("blocks")  # widths and heights of buildings
        edges = torch.cumsum(0.04 + 0.12 * blocks[:, 0], dim=1) * width
        building = torch.searchsorted(edges.contiguous(), x.expand(len(u), -1).contiguous())
        building = building.clamp(max=blocks.shape[2] - 1)
        skyline = torch.gather(blocks[:, 1], 1, building) * (0.1 + 0.4 * amplitude) * height
        bumps = stack("bumps")  # centres, radii and heights of tree crowns
        centre = bumps[:, 0, :, None] * width
        radius = (0.03 + 0.08 * bumps[:, 1, :, None]) * width
        crown = torch.sqrt(torch.relu(radius ** 2 - (x - centre) ** 2))
        trees = (crown + bumps[:, 2, :, None] * 0.15 * height * (crown > 0)).amax(dim=1)
        flat = torch.zeros_like(trees)
        profiles = torch.stack([mountains, skyline, trees, flat], dim=1)
        horizon = profiles[torch.arange(len(u)), kind].clamp(max=height)

        # poles and wires in front of everything: never sky
        occ = stack("occluders")
        y = torch.arange(height, dtype=torch.float32)[:, None] + 0.5
        occluder = torch.zeros(len(u), height, width, dtype=torch.bool)
        for k in range(2):  # up to two poles
            on = occ[:, k, 0] < 0.35
            px = occ[:, k, 1] * width
            pw = 1.0 + 2.0 * occ[:, k, 2]
            top = occ[:, k, 3] * 0.6 * height
            pole = ((x - px[:, None, None]).abs() < pw[:, None, None] / 2) \
                & (y > top[:, None, None])
            occluder |= pole & on[:, None, None]
        for k in range(2, 4):  # up to two sagging wires
            on = occ[:, k, 0] < 0.25
            y0 = (0.05 + 0.5 * occ[:, k, 1]) * height
            sag = occ[:, k, 2] * 0.25 * height
            curve = y0[:, None] + sag[:, None] * (1 - (2 * x / width - 1) ** 2)  # sags mid-span
            wire = (y - curve[:, None, :]).abs() < 0.5 + 0.5 * occ[:, k, 3, None, None]
            occluder |= wire & on[:, None, None]

        target = stats.beta.ppf(u[:, U["fraction"]].double().numpy(), *self.beta)
        target = torch.from_numpy(target).float()
        palette = _pick(u[:, U["palette"]], len(PALETTES))
        texture = _pick(u[:, U["texture"]], len(TEXTURES))
        return _Scenes(target, horizon, kind, occluder, u,
                       [torch.stack([p["clouds"][k] for p in per_image]) for k in range(5)],
                       [torch.stack([p["ripple"][k] for p in per_image]) for k in range(2)],
                       palette, texture)

    def _ground_line(self, scenes: _Scenes) -> Tensor:
        """The ground line (pixels from the bottom) that gives each image its target fraction.

        Sky is every pixel above ground line + horizon objects that no
        occluder covers. In column x the sky is the top k(x) rows minus the
        occluded ones among them, so the sky's share is a sum over columns,
        falling as the line rises: a bisection per image finds the line to
        1/64 of a pixel.
        """
        height, _ = self.size
        blocked = F.pad(scenes.occluder.to(torch.int32).cumsum(dim=1), (0, 0, 1, 0))  # (B, H+1, W)
        pixels = scenes.occluder[0].numel()
        # per-image brackets and a fixed number of halvings: an image's line does
        # not depend on the other images of its batch
        low = -scenes.horizon.amax(dim=1) - 1
        high = torch.full_like(low, float(height) + 1)
        for _ in range(math.ceil(math.log2(64 * 3 * (height + 1)))):
            mid = (low + high) / 2
            rows = self._sky_rows(mid, scenes.horizon)
            sky = rows.sum(1) - blocked.gather(1, rows[:, None]).squeeze(1).sum(1)
            too_much = sky.float() / pixels > scenes.target
            low = torch.where(too_much, mid, low)
            high = torch.where(too_much, high, mid)
        return high

    def _sky_rows(self, line: Tensor, horizon: Tensor) -> Tensor:
        """(B, W) how many top rows of each column lie above line + horizon.

        Row r (0 at the top) is at height H - r - 1/2 above the bottom; it is
        above the horizon when r < H - 1/2 - (line + horizon).
        """
        height, _ = self.size
        return torch.ceil(height - 0.5 - (line[:, None] + horizon)).clamp(0, height).long()

    def _masks(self, scenes: _Scenes, line: Tensor) -> tuple[Tensor, Tensor]:
        """(sky mask, mask of the horizon objects) for ground lines `line`."""
        height, _ = self.size
        r = torch.arange(height)[None, :, None]
        above_horizon = r < self._sky_rows(line, scenes.horizon)[:, None, :]
        above_ground = r < self._sky_rows(line, torch.zeros_like(scenes.horizon))[:, None, :]
        sky = above_horizon & ~scenes.occluder
        objects = above_ground & ~above_horizon & ~scenes.occluder
        return sky, objects

    # ------------------------------------------------------------ painting
    def _paint(self, scenes: _Scenes, sky_mask: Tensor, objects: Tensor,
               sky_paint: Tensor | None = None) -> Tensor:
        """(B, 3, H, W) float image. `sky_paint`, when given, replaces the colour
        painted on sky pixels (the tests paint NaN to find exactly where sky is drawn)."""
        height, width = self.size
        b = len(scenes.target)
        u = scenes.u
        table = torch.tensor([[*top, *hor, *sun, *cloud, strength]
                              for top, hor, sun, cloud, strength in PALETTES.values()])
        pal = table[scenes.palette]
        jitter = 1 + 0.15 * (u[:, U["jitter"], None] - 0.5)
        top, hor = pal[:, 0:3] * jitter, pal[:, 3:6] * jitter
        sun_rgb, cloud_rgb, strength = pal[:, 6:9], pal[:, 9:12], pal[:, 12]
        yy = torch.linspace(0, 1, height)[None, :, None]
        xx = torch.linspace(0, 1, width)[None, None, :]
        t = yy.pow(0.7 + 0.6 * u[:, U["gradient"], None, None])
        sky = top[:, :, None, None] + (hor - top)[:, :, None, None] * t[:, None]
        sx, sy = u[:, U["sun_x"], None, None], 0.1 + 0.6 * u[:, U["sun_y"], None, None]
        glow = torch.exp(-((xx - sx) ** 2 * (width / height) ** 2 + (yy - sy) ** 2)
                         / (0.01 + 0.05 * u[:, U["glow"], None, None]))
        sky = sky + (strength[:, None, None] * glow)[:, None] * (sun_rgb[:, :, None, None] - sky)
        clouds = _smooth_noise(scenes.cloud_grids, (height, width))
        cover = 0.3 + 0.6 * u[:, U["cloud_cover"], None, None]  # noise level above which: cloud
        alpha = ((clouds - cover) / 0.15).clamp(0, 1) * (0.6 + 0.4 * u[:, U["cloud_opacity"],
                                                                         None, None])
        sky = sky + alpha[:, None] * (cloud_rgb[:, :, None, None] * (0.85 + 0.15 * clouds[:, None])
                                      - sky)

        # ground: a real texture, scaled, shifted and tinted
        tex = _textures()[scenes.texture][:, None]
        scale = 0.3 + 0.5 * u[:, U["texture_scale"]]
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = scale * width / 256
        theta[:, 1, 1] = scale * height / 256
        theta[:, 0, 2] = (u[:, U["texture_x"]] - 0.5) * (1 - scale)
        theta[:, 1, 2] = (u[:, U["texture_y"]] - 0.5) * (1 - scale)
        grid = F.affine_grid(theta, (b, 1, height, width), align_corners=False)
        grain = F.grid_sample(tex, grid, mode="bilinear", padding_mode="reflection",
                              align_corners=False)
        tints = torch.tensor(GROUND_TINTS)
        tint = tints[_pick(u[:, U["ground_tint"]], len(GROUND_TINTS))]
        ground = tint[:, :, None, None] * (0.45 + 0.9 * grain)

        # horizon objects: distant ridges fade into the horizon's colour, a
        # skyline may be a sky-blue wall, tree crowns are dark green
        haze = (hor * 0.55 + torch.tensor([0.35, 0.40, 0.50]) * 0.45)
        grey_wall = torch.tensor([0.55, 0.52, 0.50]) * (0.6 + 0.6 * u[:, U["wall_grey"], None])
        wall = torch.where((u[:, U["blue_wall"]] < 0.35)[:, None], torch.tensor(BLUE_WALL),
                           grey_wall)
        dark = torch.tensor([0.10, 0.24, 0.10])
        colour = torch.stack([haze, wall, dark.expand(b, 3), haze], dim=1)[torch.arange(b),
                                                                            scenes.kind]
        things = colour[:, :, None, None] * (0.75 + 0.5 * grain)
        image = torch.where(objects[:, None], things, ground)

        # water mirroring the sky in the lower ground (hard negative)
        water_line = (0.55 + 0.35 * u[:, U["water_line"]]).view(b, 1, 1) * height
        ripple = _smooth_noise(scenes.ripple_grids, (height, width))
        rows = torch.arange(height, dtype=torch.float32)[None, :, None]
        has_water = (u[:, U["water"]] < 0.3).view(b, 1, 1)
        water = has_water & (rows > water_line) & ~objects & ~sky_mask
        mirrored = torch.flip(sky, dims=[2]) * (0.55 + 0.3 * ripple[:, None])
        image = torch.where(water[:, None], mirrored, image)

        painted = sky if sky_paint is None else sky_paint.expand_as(sky)
        image = torch.where(sky_mask[:, None], painted, image)
        image = torch.where(scenes.occluder[:, None], torch.tensor(0.08), image)

        # fog over everything (hard negative: it greys the ground towards the sky)
        fog = (u[:, U["fog"]] < 0.2).float() * (0.3 + 0.4 * u[:, U["fog_amount"]])
        fog_rgb = hor * 0.5 + 0.45
        depth = (1 - yy).clamp(0, 1)
        amount = (fog[:, None, None] * (0.4 + 0.6 * depth))[:, None]
        return image + amount * (fog_rgb[:, :, None, None] - image)

    # ------------------------------------------------------------ the interface
    def batch(self, indices) -> SkyBatch:
        """Images i for i in `indices`, with their masks, fractions and big labels."""
        index = _check_indices(indices, self.n)
        scenes = self._draw(index)
        sky, objects = self._masks(scenes, self._ground_line(scenes))
        image = self._paint(scenes, sky, objects)
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
        fractions = sky.float().mean(dim=(1, 2))
        return SkyBatch(image, sky, fractions, fractions >= self.threshold, index)

    def fractions(self, indices=None, chunk: int = 512) -> Tensor:
        """Sky fractions of images `indices` (default: all), without painting them."""
        index = _check_indices(range(self.n) if indices is None else indices, self.n)
        out = []
        for part in index.split(chunk):
            scenes = self._draw(part)
            sky, _ = self._masks(scenes, self._ground_line(scenes))
            out.append(sky.float().mean(dim=(1, 2)))
        return torch.cat(out) if out else torch.zeros(0)


def images_per_chunk(size: tuple[int, int]) -> int:
    """How many images of `size` to paint at a time: as many as fill `CHUNK_BYTES` with
    float32 RGB maps, and at most 64, as each also samples 256 x 256 textures, whatever
    its size. On a 2-core VM, 28 images a chunk at 128 x 192 painted 1.65-1.87x as many
    per second as 256, and 64 at 64 x 96 1.25-1.40x (benchmarks/RESULTS.md)."""
    height, width = size
    return max(1, min(64, CHUNK_BYTES // (3 * height * width * 4)))


def load_batches(dataset, indices=None, chunk: int | None = None) -> SkyBatch:
    """Images `indices` (default: all) of either source as one SkyBatch, made
    `chunk` images at a time (default: `images_per_chunk(dataset.size)`), with a
    progress bar (`f1lib.progress`). Each image depends on its index alone, so the
    chunks change nothing but the speed."""
    from ..progress import progress_bar

    index = _check_indices(range(len(dataset)) if indices is None else indices, len(dataset))
    chunk = chunk or images_per_chunk(dataset.size)
    parts = [dataset.batch(part) for part in progress_bar(index.split(chunk), desc="sky images")]
    if not parts:
        raise ValueError("no images selected")
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
