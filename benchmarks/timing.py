"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def clock(device: str) -> float:
    """perf_counter once the device has finished its queued work."""
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def steady_rate(train_outer_loops: Callable[[int], float], outer: int, inner: int,
                repeats: int = 3) -> tuple[float, float]:
    """(seconds per step, fixed seconds) of a trainer, each the median of `repeats`.

    train_outer_loops(k) trains k outer loops of `inner` steps from scratch
    and returns its wall time. The difference of k = outer and k = 2 outer,
    divided by the extra steps, is the steady step time: set-up, lazy
    initialisation and CUDA-graph capture cancel out. What they cost is the
    shorter training's time beyond its steps. A first, discarded training
    takes the process's one-off costs (kernel libraries' initialisation); the
    median over repeats keeps a machine's passing load out of the figure.
    """
    train_outer_loops(outer)
    per_steps, fixed = [], []
    for _ in range(repeats):
        short = train_outer_loops(outer)
        long = train_outer_loops(2 * outer)
        per_steps.append((long - short) / (outer * inner))
        fixed.append(short - outer * inner * per_steps[-1])
    per_step = statistics.median(per_steps)
    if per_step <= 0:
        raise RuntimeError(f"timings too noisy to difference (median {per_step:.2e} s per step "
                           f"over {repeats} repeats): raise --inner or --outer")
    return per_step, max(0.0, statistics.median(fixed))
