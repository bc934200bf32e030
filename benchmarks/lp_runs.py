"""The lp_bound chapter's runs: a naive loop, one run of f1lib, runs stacked as the chapter does.

The work is one job of f1lib.lp_study: Algorithm 1 on fixed 2-D problems of 120
points (batch 30, beta = 1), R runs trained by f1lib.train_runs as one vmapped
step (R = 1: the plain single-run step). R runs are the first min(R, 6) of the
chapter's six problems with R / min(R, 6) seeds each: R = 18 is the quick
profile's job (3 seeds), R = 30 the paper profile's (5 seeds). Such a step costs
Python and dispatch, not arithmetic, so a step of R stacked runs costs about
the same for every R > 1 (benchmarks/RESULTS.md). It times lp_study.run_job
itself, evaluation after each outer loop included. The chapter's jobs run in a
pool of CPU processes, one thread each, so this script times one thread on the CPU.

naive       the obvious loop (benchmarks/naive.py) on the first problem: a Dataset
            that makes each point float32 when asked for, a shuffling DataLoader of
            batches of 30, and `.item()` bookkeeping every step (the loss and the
            scorer's eps); no evaluation. One run: the first problem, seed 0.

Every figure is the median of --repeats timings; f1lib's are steady-state
(timing.steady_rate: the difference of two trainings of different lengths, so
set-up drops out), the naive loop's are --naive-steps steps after 3 warm-up ones.
"vs naive" is the naive step's time over the row's time per run-step.

    python benchmarks/lp_runs.py
    python benchmarks/lp_runs.py --runs 1 2 --variant stable --outer 1 --inner 100 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch.utils.data import Dataset

from f1lib import Schedule
from f1lib.lp_study import Job, Problem, chapter_problems, run_job, seeded_regularizer
from f1lib.models import FixedFeatures
from f1lib.profiles import PROFILES
from naive import naive_loop
from timing import steady_rate, timed

BATCH = 30  # the lp_bound chapter's


class PerSamplePoints(Dataset):
    """Point i as a naive loop holds it: float64, made float32 when asked for. The LP
    has no task, so the target is a placeholder that the loop never reads."""

    def __init__(self, x: torch.Tensor, positive: torch.Tensor):
        self.x, self.positive = x, positive

    def __len__(self) -> int:
        return len(self.positive)

    def __getitem__(self, i: int):
        return self.x[i].float(), 0, self.positive[i], i


def naive_time(problem: Problem, variant: str, steps: int, inner: int) -> float:
    """Seconds per step of the naive loop on `problem`."""
    x, positive = problem.data()
    reg = seeded_regularizer(positive, variant, 0)
    return naive_loop(PerSamplePoints(x, positive), FixedFeatures(), reg, "cpu", steps, inner,
                      BATCH, Schedule().lr, lambda *_: {"eps": reg.scorer()[2]})


def lp_time(problems: list[Problem], variant: str, runs: int, outer: int,
            inner: int) -> float:
    """Seconds of lp_study.run_job for `runs` runs of outer x inner steps: the first
    min(runs, len(problems)) problems, with as many seeds each as make `runs`."""
    count = min(runs, len(problems))
    schedule = Schedule(outer=outer, inner=inner, batch_size=BATCH)
    job = Job(tuple(problems[:count]), variant, tuple(range(runs // count)), schedule)
    return timed("cpu", lambda: run_job(job))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu"],
                        help="the chapter trains on the CPU, whatever the machine has")
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 5, 18, 30],
                        help="runs stacked: up to 6 (one problem each) or a multiple of 6 "
                             "(seeds of every problem; 18: the quick profile's job, 30: the "
                             "paper's)")
    parser.add_argument("--variant", nargs="+", default=["paper", "stable"],
                        choices=["paper", "stable"])
    parser.add_argument("--outer", type=int, default=2,
                        help="outer loops of the shorter training (the longer has twice)")
    parser.add_argument("--inner", type=int, default=500, help="steps per outer loop")
    parser.add_argument("--naive-steps", type=int, default=1000,
                        help="the naive loop's timed steps")
    parser.add_argument("--repeats", type=int, default=3, help="timings per row (median)")
    args = parser.parse_args()
    problems = chapter_problems(PROFILES["lp_bound"]["defaults"])
    if any(r < 1 or (r > len(problems) and r % len(problems)) for r in args.runs):
        parser.error(f"--runs: from 1 to {len(problems)}, or a multiple of {len(problems)}")
    if args.naive_steps < 1:
        parser.error("--naive-steps: at least 1")
    torch.set_num_threads(1)  # as in lp_study's worker processes
    print(f"cpu, 1 thread; torch {torch.__version__}; the lp_bound chapter's problems, "
          f"{problems[0].n_examples} points each, batch {BATCH}; the naive loop on "
          f"{problems[0].label}")
    print(f"{'variant':<8} {'mode':<7} {'runs':>5} {'ms/step':>9} {'ms/run-step':>12} "
          f"{'vs 1 run':>9} {'vs naive':>9}")
    for variant in args.variant:
        naive = statistics.median(naive_time(problems[0], variant, args.naive_steps, args.inner)
                                  for _ in range(args.repeats))
        print(f"{variant:<8} {'naive':<7} {1:>5} {1e3 * naive:>9.3f} {1e3 * naive:>12.3f} "
              f"{'':>9} {'1.00x':>9}", flush=True)
        alone = None
        for runs in args.runs:
            per_step, _ = steady_rate(
                lambda k: lp_time(problems, variant, runs, k, args.inner),
                args.outer, args.inner, args.repeats)
            per_run = per_step / runs
            if runs == 1:
                alone = per_run
            ratio = f"{alone / per_run:>8.2f}x" if alone else f"{'':>9}"
            print(f"{variant:<8} {'f1lib':<7} {runs:>5} {1e3 * per_step:>9.3f} "
                  f"{1e3 * per_run:>12.3f} {ratio} {naive / per_run:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
