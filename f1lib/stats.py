"""Means over seeds with 95% intervals: how every number in the book is reported."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean over independent seeds.

    With one value there is no spread to estimate: the bounds are NaN. NaNs
    are not dropped silently: they make the result NaN.
    """
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = float(x.mean())
    if x.size == 1 or not np.isfinite(x).all():
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return mean, mean - float(half), mean + float(half)


def format_ci(mean: float, low: float, high: float, digits: int = 4, scale: float = 1.0,
              signed: bool = False) -> str:
    """"mean [low, high]", each times `scale`; just the mean when there is no interval."""
    spec = f"{'+' if signed else ''}.{digits}f"
    text = format(scale * mean, spec)
    if math.isfinite(low) and math.isfinite(high):
        text += f" [{format(scale * low, spec)}, {format(scale * high, spec)}]"
    return text
