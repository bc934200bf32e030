"""Procedural sky scenes: the offline stand-in for COCO-Stuff's sky, shaped like it.

Image i is a pure function of (seed, i): its scene is drawn from a generator seeded by
them. Its sky fraction is drawn from COCO-Stuff's own histogram (`sky_common`), and the
scene's ground line is placed, by bisection, where the sky drawn has that share of the
pixels. The mask is exactly the pixels painted as sky.

What makes the scenes hard, as photographs are:

- sky seen through and around things: tree canopies with gaps (the sky in the gaps is sky),
  buildings, people, poles and wires in front;
- things that look like sky and are not: windows mirroring the sky, water, sky-blue walls,
  distant ridges faded into the horizon's colour, snow;
- the camera: tilted horizons, fog and haze, over- and under-exposure, sensor noise, and
  JPEG-like block compression.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .procedural_choices import CANOPY_BELOW, HORIZONS, PEOPLE_BELOW, U, pick, smooth_noise
from .procedural_paint import compress, paint
from .sky_common import (BIG_THRESHOLD, SkyBatch, check_indices, check_threshold,
                         coco_fraction_quantile)

class Scenes:
    """The random choices behind a batch of scenes, one row per image, and the shapes they
    fix before the ground line is placed."""

    def __init__(self, seeds: list[int], size: tuple[int, int], with_grain: bool):
        height, width = self.size = size
        draws = [self._one(seed, size, with_grain) for seed in seeds]
        stack = lambda key: torch.stack([d[key] for d in draws])  # noqa: E731
        self.u = u = stack("u")
        self.target = torch.from_numpy(coco_fraction_quantile(u[:, U["fraction"]].double()
                                                              .numpy())).float()
        self.kind = pick(u[:, U["horizon"]], len(HORIZONS))
        self.cloud_grids = [torch.stack([d["clouds"][k] for d in draws]) for k in range(5)]
        self.ripple_grids = [torch.stack([d["ripple"][k] for d in draws]) for k in range(2)]
        self.grain = stack("grain") if with_grain else None
        x = torch.arange(width, dtype=torch.float32) + 0.5
        y = torch.arange(height, dtype=torch.float32)[:, None] + 0.5

        # the ground tilts: a line through the image's centre, up to about 11 degrees
        slope = 0.2 * (2 * u[:, U["tilt"]] - 1)
        self.ground = slope[:, None] * (x - width / 2)  # (B, W) height above the ground line
        self.horizon = self.ground + self._objects(draws, x)

        # in front of everything, never sky: poles and wires, leaves, people
        kind = torch.zeros(len(u), height, width, dtype=torch.uint8)
        kind[self._poles_and_wires(stack("occluders"), x, y)] = 1
        self.leaves = smooth_noise([torch.stack([d["canopy"][k] for d in draws])
                                    for k in range(4)], size)
        kind[self._canopy(x, y)] = 2
        for k, person in enumerate(self._people(stack("people"), x, y)):
            kind[person] = 3 + k
        self.occluder_kind = kind
        self.occluder = kind > 0
        self.people_colours = stack("people")[:, :, 4:7]

    @staticmethod
    def _one(seed: int, size: tuple[int, int], with_grain: bool) -> dict:
        g = torch.Generator().manual_seed(seed)
        draw = {
            "u": torch.rand(len(U), generator=g),
            "ridge": [torch.rand(1, k + 1, generator=g) for k in (3, 6, 12, 24, 48)],
            "blocks": torch.rand(2, 24, generator=g),
            "bumps": torch.rand(3, 32, generator=g),
            "occluders": torch.rand(4, 4, generator=g),
            "clouds": [torch.rand(k, k + k // 2 + 1, generator=g) for k in (2, 4, 8, 16, 32)],
            "ripple": [torch.rand(k, 2 * k, generator=g) for k in (8, 32)],
            "canopy": [torch.rand(k, k + k // 3 + 1, generator=g) for k in (3, 6, 12, 24)],
            "people": torch.rand(3, 7, generator=g),
        }
        if with_grain:  # drawn last: scenes drawn without it share every other draw
            draw["grain"] = torch.randn(3, *size, generator=g)
        return draw

    def _objects(self, draws: list[dict], x: Tensor) -> Tensor:
        """(B, W) height of the horizon's objects above the ground line, in pixels."""
        height, width = self.size
        u = self.u
        cat = lambda key, k: torch.cat([d[key][k] for d in draws])  # noqa: E731
        ridge = smooth_noise([cat("ridge", k)[:, None].expand(-1, 2, -1) for k in range(5)],
                             (2, width))[:, 0]
        amplitude = u[:, U["amplitude"], None]
        mountains = ridge * (0.05 + 0.35 * amplitude) * height
        blocks = torch.stack([d["blocks"] for d in draws])  # widths and heights of buildings
        edges = torch.cumsum(0.04 + 0.12 * blocks[:, 0], dim=1) * width
        building = torch.searchsorted(edges.contiguous(), x.expand(len(u), -1).contiguous())
        building = building.clamp(max=blocks.shape[2] - 1)
        skyline = torch.gather(blocks[:, 1], 1, building) * (0.1 + 0.5 * amplitude) * height
        bumps = torch.stack([d["bumps"] for d in draws])  # centres, radii, heights of crowns
        centre = bumps[:, 0, :, None] * width
        radius = (0.03 + 0.08 * bumps[:, 1, :, None]) * width
        crown = torch.sqrt(torch.relu(radius ** 2 - (x - centre) ** 2))
        trees = (crown + bumps[:, 2, :, None] * 0.15 * height * (crown > 0)).amax(dim=1)
        profiles = torch.stack([mountains, skyline, trees, torch.zeros_like(trees)], dim=1)
        return profiles[torch.arange(len(u)), self.kind].clamp(max=height)

    def _poles_and_wires(self, occ: Tensor, x: Tensor, y: Tensor) -> Tensor:
        height, width = self.size
        mask = torch.zeros(len(occ), height, width, dtype=torch.bool)
        for k in range(2):  # up to two poles
            on = occ[:, k, 0] < 0.35
            pole = ((x - occ[:, k, 1, None, None] * width).abs()
                    < (1.0 + 2.0 * occ[:, k, 2, None, None]) / 2)
            mask |= pole & (y > occ[:, k, 3, None, None] * 0.6 * height) & on[:, None, None]
        for k in range(2, 4):  # up to two sagging wires
            on = occ[:, k, 0] < 0.3
            y0 = (0.05 + 0.5 * occ[:, k, 1]) * height
            sag = occ[:, k, 2] * 0.25 * height
            curve = y0[:, None] + sag[:, None] * (1 - (2 * x / width - 1) ** 2)  # sags mid-span
            wire = (y - curve[:, None, :]).abs() < 0.5 + 0.5 * occ[:, k, 3, None, None]
            mask |= wire & on[:, None, None]
        return mask

    def _canopy(self, x: Tensor, y: Tensor) -> Tensor:
        """Foliage hanging from the top edge, dense near its branch and gappy at its rim."""
        height, width = self.size
        u = self.u
        on = (u[:, U["canopy"]] < 0.35) & (self.target < CANOPY_BELOW)
        reach = (0.4 + 0.6 * u[:, U["canopy_reach"], None, None]) * height
        dx = (x - u[:, U["canopy_x"], None, None] * width) / 1.5
        distance = torch.sqrt(dx ** 2 + (y + 0.1 * height) ** 2) / reach
        level = 1.05 + 0.25 * u[:, U["canopy_density"], None, None]
        return (self.leaves + (1 - distance) > level) & on[:, None, None]

    def _people(self, people: Tensor, x: Tensor, y: Tensor) -> list[Tensor]:
        """Up to three standing figures, feet on the bottom edge."""
        height, _ = self.size
        u = self.u
        count = torch.where(self.target < PEOPLE_BELOW, pick(u[:, U["people"]], 6) - 2, 0)
        figures = []
        for k in range(people.shape[1]):
            tall = (0.15 + 0.45 * people[:, k, 1, None, None]) * height
            px = people[:, k, 0, None, None] * x.numel()
            body = ((x - px).abs() < 0.14 * tall) & (y > height - 0.82 * tall)
            head = (x - px) ** 2 + (y - (height - 0.9 * tall)) ** 2 < (0.1 * tall) ** 2
            figures.append((body | head) & (k < count)[:, None, None])
        return figures


class ProceduralSky:
    """A seeded, procedural sky-segmentation set: the offline stand-in for COCO-Stuff.

    Scenes: a sky gradient with a sun glow and a time-of-day palette; clouds of fractal
    noise (labelled sky, as COCO-Stuff's "clouds" are); a tilted horizon of mountain ridges,
    a skyline with windows, a tree line or a plain; tree canopies, people, poles and wires in
    front; textured ground (scikit-image's grass, gravel and brick photographs); hard
    negatives (water and windows mirroring the sky, sky-blue walls, snow); and the camera's
    fog, exposure, sensor noise and compression (`f1lib.data.procedural_paint`).

    Args:
        n: number of images.
        size: (height, width).
        seed: image i is a function of (seed, i) alone.
        threshold: sky fraction from which an image is "big".
    """

    def __init__(self, n: int, size: tuple[int, int] = (128, 192), seed: int = 0,
                 threshold: float = BIG_THRESHOLD):
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if len(size) != 2 or min(size) < 16:
            raise ValueError(f"size must be (height, width), each at least 16; got {size!r}")
        self.n, self.size, self.seed = n, (int(size[0]), int(size[1])), int(seed)
        self.threshold = check_threshold(threshold)

    def __len__(self) -> int:
        return self.n

    def draw(self, index: Tensor, with_grain: bool = True) -> Scenes:
        """The scenes of images `index`; `with_grain=False` leaves out the sensor noise,
        which only painting needs."""
        return Scenes([self.seed * 1_000_003 + i for i in index.tolist()], self.size,
                      with_grain)

    def ground_line(self, scenes: Scenes) -> Tensor:
        """The ground line (pixels above the bottom at the image's centre) that gives each
        image its target fraction.

        Sky is every pixel above ground line + horizon profile that no occluder covers. In
        column x the sky is the top k(x) rows minus the occluded ones among them, so the
        sky's share is a sum over columns, falling as the line rises: a bisection per image
        finds the line to 1/64 of a pixel. A target that the occluders leave no room for
        gives as much sky as there can be.
        """
        height, _ = self.size
        blocked = F.pad(scenes.occluder.to(torch.int32).cumsum(dim=1), (0, 0, 1, 0))
        pixels = scenes.occluder[0].numel()
        # per-image brackets and a fixed number of halvings: an image's line does not
        # depend on the other images of its batch
        low = -scenes.horizon.amax(dim=1) - 1
        high = height + 1 - scenes.horizon.amin(dim=1)
        for _ in range(math.ceil(math.log2(64 * 4 * (height + 1)))):
            mid = (low + high) / 2
            rows = self.sky_rows(mid, scenes.horizon)
            sky = rows.sum(1) - blocked.gather(1, rows[:, None]).squeeze(1).sum(1)
            too_much = sky.float() / pixels > scenes.target
            low = torch.where(too_much, mid, low)
            high = torch.where(too_much, high, mid)
        return high

    def sky_rows(self, line: Tensor, profile: Tensor) -> Tensor:
        """(B, W) how many top rows of each column lie above line + profile.

        Row r (0 at the top) is at height H - r - 1/2 above the bottom; it is above the
        profile when r < H - 1/2 - (line + profile).
        """
        height, _ = self.size
        return torch.ceil(height - 0.5 - (line[:, None] + profile)).clamp(0, height).long()

    def masks(self, scenes: Scenes, line: Tensor) -> tuple[Tensor, Tensor]:
        """(sky mask, mask of the horizon's objects) for ground lines `line`."""
        height, _ = self.size
        r = torch.arange(height)[None, :, None]
        above_horizon = r < self.sky_rows(line, scenes.horizon)[:, None, :]
        above_ground = r < self.sky_rows(line, scenes.ground)[:, None, :]
        sky = above_horizon & ~scenes.occluder
        objects = above_ground & ~above_horizon & ~scenes.occluder
        return sky, objects

    def batch(self, indices) -> SkyBatch:
        """Images i for i in `indices`, with their masks, fractions and big labels."""
        index = check_indices(indices, self.n)
        scenes = self.draw(index)
        line = self.ground_line(scenes)
        sky, objects = self.masks(scenes, line)
        image = paint(scenes, sky, objects)
        image = compress((image.clamp(0, 1) * 255).round(), scenes).to(torch.uint8)
        fractions = sky.float().mean(dim=(1, 2))
        return SkyBatch(image, sky, fractions, fractions >= self.threshold, index)

    def fractions(self, indices=None, chunk: int = 512) -> Tensor:
        """Sky fractions of images `indices` (default: all), without painting them."""
        index = check_indices(range(self.n) if indices is None else indices, self.n)
        out = []
        for part in index.split(chunk):
            scenes = self.draw(part, with_grain=False)
            sky, _ = self.masks(scenes, self.ground_line(scenes))
            out.append(sky.float().mean(dim=(1, 2)))
        return torch.cat(out) if out else torch.zeros(0)
