"""The random choices that make a procedural sky scene, by name, and the fractal noise
that its clouds, ridges, leaves and ripples are made of."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

HORIZONS = ("mountains", "skyline", "trees", "flat")
# One uniform per random choice of a scene, by name
U = {name: k for k, name in enumerate((
    "fraction", "horizon", "amplitude", "palette", "texture", "jitter", "gradient", "sun_x",
    "sun_y", "glow", "cloud_cover", "cloud_opacity", "texture_scale", "texture_x", "texture_y",
    "ground_tint", "blue_wall", "wall_grey", "water", "water_line", "fog", "fog_amount",
    "tilt", "canopy", "canopy_x", "canopy_reach", "canopy_density", "people", "windows",
    "window_size", "exposure", "gamma", "noise", "compress", "quality"))}
# targets above which a scene has no canopy, and no people: they would hide more sky than
# such a target leaves room for
CANOPY_BELOW, PEOPLE_BELOW = 0.8, 0.7


def pick(u: Tensor, n: int) -> Tensor:
    """A uniform in [0, 1) as an index in [0, n)."""
    return (u * n).long().clamp(max=n - 1)


def smooth_noise(grids: list[Tensor], size: tuple[int, int]) -> Tensor:
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
