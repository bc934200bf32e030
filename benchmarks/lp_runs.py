"""The lp_bound chapter's runs: one run alone against the seeds of a problem stacked.

The work is one job of f1lib.lp_study: Algorithm 1 on a fixed 2-D problem of 120
points (batch 30, beta = 1), R runs that differ in seed only, trained by
f1lib.train_runs as one vmapped step (R = 1: the plain single-run step). Such a
step costs Python and dispatch, not arithmetic, so a step of R stacked runs
costs about the same for every R > 1 (about twice one run's, on the CPU VM of
benchmarks/RESULTS.md). It times lp_study.run_job itself, evaluation after each outer
loop included. The chapter's jobs run in a pool of CPU processes, one thread
each, so this script times one thread on the CPU.

Every figure is the median of --repeats steady-state timings (timing.steady_rate:
the difference of two trainings of different lengths, so set-up drops out).

    python benchmarks/lp_runs.py
    python benchmarks/lp_runs.py --runs 1 2 --variant stable --outer 1 --inner 100 --repeats 1
"""

from __future__ import annotations

import argparse

import torch

from f1lib import Schedule
from f1lib.lp_study import Job, Problem, run_job
from timing import steady_rate, timed


def lp_time(problem: Problem, variant: str, runs: int, outer: int, inner: int) -> float:
    """Seconds of lp_study.run_job for `runs` seeds of outer x inner steps."""
    schedule = Schedule(outer=outer, inner=inner, batch_size=30)
    return timed("cpu", lambda: run_job(Job(problem, variant, tuple(range(runs)), schedule)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu"],
                        help="the chapter trains on the CPU, whatever the machine has")
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 3, 5],
                        help="runs stacked (the quick profile has 3 seeds, the paper 5)")
    parser.add_argument("--variant", nargs="+", default=["paper", "stable"],
                        choices=["paper", "stable"])
    parser.add_argument("--outer", type=int, default=2,
                        help="outer loops of the shorter training (the longer has twice)")
    parser.add_argument("--inner", type=int, default=500, help="steps per outer loop")
    parser.add_argument("--repeats", type=int, default=3, help="timings per row (median)")
    parser.add_argument("--problem", type=float, nargs=2, default=[1.5, 0.0],
                        metavar=("SEPARATION", "OFFSET"))
    args = parser.parse_args()
    if min(args.runs) < 1:
        parser.error("--runs: at least 1")
    torch.set_num_threads(1)  # as in lp_study's worker processes
    problem = Problem(*args.problem)
    print(f"cpu, 1 thread; torch {torch.__version__}; {problem.label}, "
          f"{problem.n_examples} points, batch 30")
    print(f"{'variant':<8} {'runs':>5} {'ms/step':>9} {'ms/run-step':>12} {'vs 1 run':>9}")
    for variant in args.variant:
        alone = None
        for runs in args.runs:
            per_step, _ = steady_rate(
                lambda k: lp_time(problem, variant, runs, k, args.inner),
                args.outer, args.inner, args.repeats)
            per_run = per_step / runs
            if runs == 1:
                alone = per_run
            ratio = f"{alone / per_run:>8.2f}x" if alone else f"{'':>9}"
            print(f"{variant:<8} {runs:>5} {1e3 * per_step:>9.3f} {1e3 * per_run:>12.3f} "
                  f"{ratio}", flush=True)


if __name__ == "__main__":
    main()
