"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import time
from typing import Callable

import torch


def clock(device: str) -> float:
    """perf_counter once the device has finished its queued work."""
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def steady_rate(train_outer_loops: Callable[[int], float], outer: int,
                inner: int) -> tuple[float, float]:
    """(seconds per step, fixed seconds) of a trainer, from two trainings.

    train_outer_loops(k) trains k outer loops of `inner` steps from scratch
    and returns its wall time. The difference of k = outer and k = 2 outer,
    divided by the extra steps, is the steady step time: set-up, lazy
    initialisation and CUDA-graph capture cancel out. What they cost is the
    shorter training's time beyond its steps. A first, discarded training
    takes the process's one-off costs (kernel libraries' initialisation).
    """
    train_outer_loops(outer)
    short = train_outer_loops(outer)
    long = train_outer_loops(2 * outer)
    per_step = (long - short) / (outer * inner)
    if per_step <= 0:
        raise RuntimeError(f"timings too noisy to difference ({short:.3f} s for {outer} outer "
                           f"loops, {long:.3f} s for {2 * outer}): raise --inner or --outer")
    return per_step, max(0.0, short - outer * inner * per_step)
