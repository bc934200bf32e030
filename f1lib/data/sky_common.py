"""What both sky sources share: the batch they answer with, the big/small threshold, and
COCO-Stuff's published sky fractions, which the procedural scenes are drawn to follow.

COCO-Stuff's numbers are those of its 2017 train images with both sky categories (clouds and
sky-other), the selection of the paper's successor (Ravi et al. 2020): the histogram is the
one cached in its repository, abhay-venkatesh/f1-cv,
`scripts/archive/pretty_coco_sky/sky_histogram.cache`, decoded to ten equal bins over [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

BIG_THRESHOLD = 0.6  # the paper's Figure 7: an image with at least this share of sky is big
SELECTIONS = ("all", "any", "both")

# COCO-Stuff 2017 train, "both" selection: images per tenth of sky fraction, [0, 0.1) first
COCO_SKY_HISTOGRAM = (392, 535, 659, 640, 576, 333, 224, 126, 84, 85)
COCO_STUFF_TRAIN = {
    "images": 3654, "mean": 0.362, "sd": 0.218, "big": 519, "big_share": 0.142,
    "quantiles": {0.10: 0.095, 0.25: 0.198, 0.50: 0.339, 0.75: 0.487, 0.90: 0.665},
}


def histogram_shares(fractions, bins: int = len(COCO_SKY_HISTOGRAM)) -> np.ndarray:
    """Shares of `fractions` in `bins` equal bins over [0, 1] (1.0 falls in the last)."""
    values = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("no sky fractions to histogram")
    counts, _ = np.histogram(values, bins=bins, range=(0.0, 1.0))
    return counts / values.size


def coco_histogram_distance(fractions) -> float:
    """The L1 distance between the ten-bin shares of `fractions` and COCO-Stuff's (0 to 2)."""
    coco = np.asarray(COCO_SKY_HISTOGRAM, dtype=np.float64)
    return float(np.abs(histogram_shares(fractions) - coco / coco.sum()).sum())


def coco_fraction_quantile(u) -> np.ndarray:
    """COCO-Stuff's sky-fraction distribution at probabilities `u`: the inverse of the
    histogram's distribution function, uniform within each bin."""
    counts = np.asarray(COCO_SKY_HISTOGRAM, dtype=np.float64)
    cdf = np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])
    return np.interp(np.asarray(u, dtype=np.float64), cdf, np.linspace(0, 1, len(counts) + 1))


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


def check_indices(indices, n: int) -> Tensor:
    """`indices` as a flat int64 tensor, each in [0, n)."""
    index = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
        raise IndexError(f"indices must be in [0, {n}), got min {int(index.min())}, "
                         f"max {int(index.max())}")
    return index


def check_threshold(threshold: float) -> float:
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    return threshold
