"""Small fixed-feature problems for checking Algorithm 1 against the exact LP."""

from __future__ import annotations

import torch
from torch import Tensor


def check_problem_size(n: int, positive_fraction: float) -> None:
    """A problem needs two points at least, and a positive fraction strictly inside (0, 1)."""
    if n < 2 or not 0 < positive_fraction < 1:
        raise ValueError(f"need n >= 2 and 0 < positive_fraction < 1; got {n}, {positive_fraction}")


def gaussian_problem(n: int = 120, separation: float = 1.5, offset: float = 0.0,
                     positive_fraction: float = 1 / 3, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Two unit-variance 2-D Gaussian classes, `separation` apart along x.

    Returns (features (n, 2) float64, positive (n,) bool). `offset` shifts both
    classes by (offset, offset): the LP without a bias cannot follow the
    shift, the LP with one is unchanged by it.
    """
    check_problem_size(n, positive_fraction)
    n_pos = max(1, min(n - 1, round(n * positive_fraction)))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    positive = torch.arange(n) < n_pos
    x[:, 0] += torch.where(positive, separation / 2, -separation / 2)
    return x + offset, positive
