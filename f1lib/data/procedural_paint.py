"""How the procedural sky scenes are painted (`f1lib.data.procedural_sky`): the sky, the
ground and the horizon's objects, the things in front, then what a camera does to them.

Every operation works pixel by pixel, or on one image's own 8 x 8 blocks, in the same order
whatever the batch, so that an image comes out bit for bit the same alone or among others.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .procedural_choices import HORIZONS, U, pick, smooth_noise

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
LEAVES = (0.10, 0.24, 0.10)
TEXTURES = ("grass", "gravel", "brick")  # real photographs that scikit-image ships
# JPEG's luminance quantization table (ITU-T T.81, Annex K, Table K.1), row by row
JPEG_LUMINANCE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)


@functools.lru_cache(maxsize=1)
def textures() -> Tensor:
    """(3, 256, 256) grey textures in [0, 1]: scikit-image's grass, gravel and brick."""
    try:
        from skimage import data
    except ImportError as err:
        raise ImportError("the procedural sky's ground textures need scikit-image: "
                          "pip install scikit-image") from err
    stack = torch.stack([torch.from_numpy(getattr(data, name)().astype(np.float32) / 255.0)
                         for name in TEXTURES])
    return F.avg_pool2d(stack[:, None], 2)[:, 0]


def _sky(scenes, u, column, row) -> tuple[Tensor, Tensor]:
    """(sky colour everywhere, the horizon's colour): gradient, sun glow and clouds."""
    height, width = scenes.size
    table = torch.tensor([[*top, *hor, *sun, *cloud, strength]
                          for top, hor, sun, cloud, strength in PALETTES.values()])
    pal = table[pick(u[:, U["palette"]], len(PALETTES))]
    jitter = 1 + 0.15 * (u[:, U["jitter"], None] - 0.5)
    top, hor = pal[:, 0:3] * jitter, pal[:, 3:6] * jitter
    sun_rgb, cloud_rgb, strength = pal[:, 6:9], pal[:, 9:12], pal[:, 12]
    t = row.pow(0.7 + 0.6 * u[:, U["gradient"], None, None])
    sky = top[:, :, None, None] + (hor - top)[:, :, None, None] * t[:, None]
    sx, sy = u[:, U["sun_x"], None, None], 0.1 + 0.6 * u[:, U["sun_y"], None, None]
    glow = torch.exp(-((column - sx) ** 2 * (width / height) ** 2 + (row - sy) ** 2)
                     / (0.01 + 0.05 * u[:, U["glow"], None, None]))
    sky = sky + (strength[:, None, None] * glow)[:, None] * (sun_rgb[:, :, None, None] - sky)
    clouds = smooth_noise(scenes.cloud_grids, (height, width))
    cover = 0.3 + 0.6 * u[:, U["cloud_cover"], None, None]  # noise level above which: cloud
    alpha = ((clouds - cover) / 0.15).clamp(0, 1) * (0.6 + 0.4 * u[:, U["cloud_opacity"],
                                                                     None, None])
    cloud = cloud_rgb[:, :, None, None] * (0.85 + 0.15 * clouds[:, None])
    return sky + alpha[:, None] * (cloud - sky), hor


def _grain(scenes, u) -> Tensor:
    """(B, 1, H, W) a real texture, scaled and shifted per image."""
    height, width = scenes.size
    b = len(u)
    tex = textures()[pick(u[:, U["texture"]], len(TEXTURES))]
    scale = 0.3 + 0.5 * u[:, U["texture_scale"]]
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = scale * width / 256
    theta[:, 1, 1] = scale * height / 256
    theta[:, 0, 2] = (u[:, U["texture_x"]] - 0.5) * (1 - scale)
    theta[:, 1, 2] = (u[:, U["texture_y"]] - 0.5) * (1 - scale)
    grid = F.affine_grid(theta, (b, 1, height, width), align_corners=False)
    return F.grid_sample(tex[:, None], grid, mode="bilinear", padding_mode="reflection",
                         align_corners=False)


def paint(scenes, sky_mask: Tensor, objects: Tensor, sky_paint: Tensor | None = None) -> Tensor:
    """(B, 3, H, W) float image of `scenes`. `sky_paint`, when given, replaces the colour
    painted on sky pixels (the tests paint NaN to find exactly where sky is drawn)."""
    height, width = scenes.size
    u = scenes.u
    b = len(u)
    row = torch.linspace(0, 1, height)[None, :, None]
    column = torch.linspace(0, 1, width)[None, None, :]
    sky, hor = _sky(scenes, u, column, row)
    grain = _grain(scenes, u)
    tint = torch.tensor(GROUND_TINTS)[pick(u[:, U["ground_tint"]], len(GROUND_TINTS))]
    ground = tint[:, :, None, None] * (0.45 + 0.9 * grain)

    # the horizon's objects: distant ridges fade into the horizon's colour, a skyline may be
    # a sky-blue wall, tree crowns are dark green
    haze = hor * 0.55 + torch.tensor([0.35, 0.40, 0.50]) * 0.45
    grey_wall = torch.tensor([0.55, 0.52, 0.50]) * (0.6 + 0.6 * u[:, U["wall_grey"], None])
    wall = torch.where((u[:, U["blue_wall"]] < 0.35)[:, None], torch.tensor(BLUE_WALL), grey_wall)
    colour = torch.stack([haze, wall, torch.tensor(LEAVES).expand(b, 3), haze],
                         dim=1)[torch.arange(b), scenes.kind]
    image = torch.where(objects[:, None], colour[:, :, None, None] * (0.75 + 0.5 * grain), ground)

    # mirrors of the sky that are not sky: a skyline's windows, and water in the lower ground
    mirrored = torch.flip(sky, dims=[3])
    scale = width / 96 * (0.7 + 0.8 * u[:, U["window_size"], None, None])
    ys, xs = torch.arange(height)[:, None], torch.arange(width)[None, :]
    period = (4 * scale).floor().clamp(min=3)
    panes = ((xs % period) >= 1) & ((xs % period) < period - 1) \
        & ((ys % (period + 1)) >= 1) & ((ys % (period + 1)) < period)
    skyline = (scenes.kind == HORIZONS.index("skyline")) & (u[:, U["windows"]] < 0.6)
    windows = objects & panes & skyline[:, None, None]
    image = torch.where(windows[:, None], mirrored * 0.85, image)
    water_line = (0.55 + 0.35 * u[:, U["water_line"]]).view(b, 1, 1) * height
    ripple = smooth_noise(scenes.ripple_grids, (height, width))
    water = (u[:, U["water"]] < 0.3).view(b, 1, 1) & (ys > water_line) & ~objects & ~sky_mask
    image = torch.where(water[:, None], mirrored * (0.55 + 0.3 * ripple[:, None]), image)

    painted = sky if sky_paint is None else sky_paint.expand_as(sky)
    image = torch.where(sky_mask[:, None], painted, image)

    # in front: poles and wires, leaves, people in clothes of their own colour
    kind = scenes.occluder_kind[:, None]
    leaves = torch.tensor(LEAVES)[None, :, None, None] * (0.5 + 1.2 * scenes.leaves[:, None])
    image = torch.where(kind == 1, torch.tensor(0.08), image)
    image = torch.where(kind == 2, leaves, image)
    for k in range(scenes.people_colours.shape[1]):
        clothes = 0.15 + 0.7 * scenes.people_colours[:, k, :, None, None]
        image = torch.where(kind == 3 + k, clothes * (0.8 + 0.4 * grain), image)

    # fog over everything (it greys the ground towards the sky), then the camera
    fog = (u[:, U["fog"]] < 0.2).float() * (0.3 + 0.4 * u[:, U["fog_amount"]])
    amount = (fog[:, None, None] * (0.4 + 0.6 * (1 - row).clamp(0, 1)))[:, None]
    image = image + amount * ((hor * 0.5 + 0.45)[:, :, None, None] - image)
    return camera(image, scenes)


def camera(image: Tensor, scenes) -> Tensor:
    """Exposure (over- and under-exposed by up to 0.8 stops), a gamma and sensor noise."""
    u = scenes.u[:, :, None, None]
    # one number per image, in Python: a vectorised exp2 over the batch rounds an image's
    # gain by where the image sits in the batch (its SIMD lanes or the scalar tail)
    gain = torch.tensor([2.0 ** (1.6 * (e - 0.5)) for e in scenes.u[:, U["exposure"]].tolist()])
    gamma = 0.75 + 0.5 * u[:, U["gamma"]]
    image = (image * gain[:, None, None, None]).clamp(0, 1).pow(gamma[:, None])
    if scenes.grain is not None:
        image = image + 0.06 * u[:, U["noise"]][:, None] ** 2 * scenes.grain
    return image


@functools.lru_cache(maxsize=1)
def _dct() -> Tensor:
    """The orthonormal 8-point DCT-II as an 8 x 8 matrix (rows: frequencies), float64."""
    k, n = torch.arange(8.0, dtype=torch.float64)[:, None], torch.arange(8.0, dtype=torch.float64)
    scale = torch.where(k == 0, math.sqrt(1 / 8), math.sqrt(2 / 8))
    return scale * torch.cos(math.pi * (2 * n + 1) * k / 16)


def _transform(blocks: Tensor, matrix: Tensor) -> Tensor:
    """matrix @ block @ matrix.T on the last two dimensions, summed term by term in a fixed
    order, so that no matrix-product kernel's blocking depends on the batch."""
    rows = sum(matrix[:, n, None] * blocks[..., n, None, :] for n in range(8))
    return sum(rows[..., :, n, None] * matrix[None, :, n] for n in range(8))


def compress(image: Tensor, scenes) -> Tensor:
    """JPEG-like compression of some images (B, 3, H, W) in [0, 255]: each channel's 8 x 8
    blocks go through the DCT, quantized with JPEG's luminance table at a quality between 15
    and 85 (IJG's scaling), and back; the rest come back as they were."""
    u = scenes.u
    on = u[:, U["compress"]] < 0.5
    if not on.any():
        return image
    height, width = image.shape[-2:]
    padded = F.pad(image[on].double(), (0, -width % 8, 0, -height % 8), mode="replicate")
    b, c, h, w = padded.shape
    blocks = padded.view(b, c, h // 8, 8, w // 8, 8).transpose(3, 4) - 128
    quality = 15 + 70 * u[on, U["quality"]].double()
    factor = torch.where(quality < 50, 5000 / quality, 200 - 2 * quality)
    table = ((torch.tensor(JPEG_LUMINANCE, dtype=torch.float64).view(1, 8, 8)
              * factor[:, None, None] + 50) / 100).floor().clamp(1, 255)
    table = table[:, None, None, None]
    coefficients = (_transform(blocks, _dct()) / table).round() * table
    restored = _transform(coefficients, _dct().T) + 128
    restored = restored.transpose(3, 4).reshape(b, c, h, w)[..., :height, :width]
    out = image.clone()
    out[on] = restored.clamp(0, 255).round().to(image.dtype)
    return out
