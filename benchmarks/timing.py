"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import sys
import time
from contextlib import nullcontext
from typing import Callable

import torch


def clock(device: str) -> float:
    """perf_counter once the device has finished its queued work."""
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def timed(device: str, train: Callable[[], object], around=None) -> float:
    """Wall seconds of train(), to the end of the device's work (inside the context
    manager `around`, if given, such as a profiler: the caller's set-up stays outside)."""
    with around or nullcontext():
        start = clock(device)
        train()
        return clock(device) - start


def steady_rate(train_outer_loops: Callable[[int], float], outer: int, inner: int,
                repeats: int = 3) -> tuple[float, float]:
    """(seconds per step, fixed seconds) of a trainer, each the median of `repeats`.

    train_outer_loops(k) trains k outer loops of `inner` steps from scratch
    and returns its wall time. The difference of k = outer and k = 2 outer,
    divided by the extra steps, is the steady step time: set-up, lazy
    initialisation and CUDA-graph capture cancel out. What they cost is the
    shorter training's time beyond its steps. A first, discarded training
    takes the process's one-off costs (kernel libraries' initialisation); the
    median over repeats keeps a machine's passing load out of the figure. Where the
    load still makes the longer training no slower, the step time falls back to an upper
    bound, with a warning on stderr.
    """
    train_outer_loops(outer)
    per_steps, fixed, longs = [], [], []
    for _ in range(repeats):
        short = train_outer_loops(outer)
        longs.append(train_outer_loops(2 * outer))
        per_steps.append((longs[-1] - short) / (outer * inner))
        fixed.append(short - outer * inner * per_steps[-1])
    per_step = statistics.median(per_steps)
    if per_step <= 0:
        # the machine's load swamped the extra steps (a busy CI runner, a short smoke run):
        # no steady step time can be differenced. The longer training's whole time over its
        # steps, set-up included, bounds it from above; the script goes on with that, and
        # says so beside its output.
        print(f"timings too noisy to difference (median {per_step:.2e} s per step over "
              f"{repeats} repeats): this row's step time is the longer training's over its "
              "steps, set-up included, an upper bound; raise --inner or --outer",
              file=sys.stderr, flush=True)
        return statistics.median(longs) / (2 * outer * inner), 0.0
    return per_step, max(0.0, statistics.median(fixed))


def print_profile(label: str, device: str, steps: int, rows: int,
                  train_inside: Callable[[object], float]) -> None:
    """torch.profiler's view of one training: `train_inside(profiler)` trains
    `steps` steps inside the profiler (a context manager) and returns its wall
    time. Prints the wall and busy time per step (the device's kernels on CUDA,
    the CPU's ops without a GPU) and the `rows` ops with the most of it."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    profiler = profile(activities=activities)
    wall = train_inside(profiler)
    ops = profiler.key_averages()
    busy = sum(getattr(op, key) for op in ops) * 1e-6  # the profiler counts microseconds
    print(f"{label}, {steps:,} steps: {1e3 * wall / steps:.3f} ms of wall time per step "
          f"(profiled), {1e3 * busy / steps:.3f} ms of "
          f"{'device busy time' if cuda else 'CPU op time'} per step", flush=True)
    print(ops.table(sort_by=key, row_limit=rows), flush=True)
