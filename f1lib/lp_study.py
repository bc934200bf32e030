"""Does Algorithm 1 reach the LP's F1 bound? The runs behind book/lp_bound.ipynb.

On fixed 2-D features the LP (5)-(9) can be solved exactly, so every run of
Algorithm 1 has a ground truth: its learned scorer's hinge bound against the
LP optimum. Runs are tiny, so their steps cost Python and dispatch, not
arithmetic: all runs of one variant, every problem and seed, train stacked as
one vmapped step (f1lib.train_runs), which for 30 runs costs about what one of
five does and under three times one run's (benchmarks/lp_runs.py), and these
jobs go to a pool of CPU processes rather than to a GPU.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch

from .config import F1Hyper, Schedule, check_variants
from .data.gaussians import check_problem_size, gaussian_problem
from .lp import f1_score, hinge_f1_bound, solve_lp
from .models import FixedFeatures
from .progress import progress_bar
from .regularizer import VARIANT_HAS_BIAS, F1Regularizer
from .stats import mean_ci
from .study import tagged_rows
from .tensor_data import TensorData
from .training import train_runs

# how often, at most, a pool worker sends its steps to run_lp_study's progress bar
REPORT_INTERVAL_S = 0.5
_WORKER: dict = {}  # a pool worker's channel back to that bar, and its interval

@dataclass(frozen=True)
class Problem:
    separation: float
    offset: float
    n_examples: int = 120
    positive_fraction: float = 1 / 3
    data_seed: int = 0

    @property
    def label(self) -> str:
        return f"separation {self.separation:g}, offset {self.offset:g}"

    def data(self):
        return gaussian_problem(self.n_examples, self.separation, self.offset,
                                self.positive_fraction, seed=self.data_seed)


def chapter_problems(config: dict) -> list[Problem]:
    """The lp_bound chapter's problems from its configuration (`f1lib.profiles`): each
    (separation, offset) of `problems`, of `n_examples` points, `positive_fraction` of them
    positive."""
    problems = config["problems"]
    if not problems or any(not isinstance(pair, (list, tuple)) or len(pair) != 2
                           for pair in problems):
        raise ValueError(f"problems: a list of one or more [separation, offset] pairs, got "
                         f"{problems!r}")
    check_problem_size(config["n_examples"], config["positive_fraction"])
    return [Problem(separation, offset, config["n_examples"], config["positive_fraction"])
            for separation, offset in problems]


@dataclass(frozen=True)
class Job:
    """The runs of one variant on problems of one size, one per problem and seed,
    trained together."""
    problems: tuple[Problem, ...]
    variant: str
    seeds: tuple[int, ...]
    schedule: Schedule

    @property
    def runs(self) -> int:
        return len(self.problems) * len(self.seeds)

    @property
    def steps(self) -> int:
        """Each run's steps."""
        return self.schedule.outer * self.schedule.inner


def lp_reference(problem: Problem) -> dict:
    """The exact LP, with and without bias, and the true F1 of its scorers."""
    x, pos = problem.data()
    row = {"problem": problem.label, "separation": problem.separation, "offset": problem.offset}
    for bias, tag in ((True, "bias"), (False, "no_bias")):
        sol = solve_lp(x, pos, bias=bias)  # the LP that VARIANT_HAS_BIAS says a variant optimises
        row[f"lp_bound_{tag}"] = sol.f1_lower_bound
        feasible = sol.status == "optimal"
        row[f"lp_true_f1_{tag}"] = float(f1_score(torch.as_tensor(sol.scores(x)), pos)) \
            if feasible else float("nan")
    return row


def seeded_regularizer(positive: torch.Tensor, variant: str, seed: int,
                       features: int = 2) -> F1Regularizer:
    """Run `seed`'s regularizer: beta = 1, as there is no task to weigh against, and the
    paper variant's random initial values drawn from `seed`."""
    torch.manual_seed(seed)
    return F1Regularizer(positive, features=features, variant=variant, hyper=F1Hyper(beta=1.0))


def run_job(job: Job, progress: Callable[[int], None] | None = None) -> list[dict]:
    """The job's runs of Algorithm 1 (`seeded_regularizer`), stacked: the run of problem p
    and seed r is what `f1lib.train` gives alone, to rounding. Each run holds its problem's
    points (`FixedFeatures(x)`) and reads them by the dataset index that the shared data
    holds, so the problems must share their size and their positives. Each run's wall time
    is its share of the job's. `progress` is given the steps done as they are done
    (`f1lib.train_runs`)."""
    data = [problem.data() for problem in job.problems]
    positive = data[0][1]
    for problem, (_, pos) in zip(job.problems, data, strict=True):
        if not torch.equal(pos, positive):
            raise ValueError(f"problem {problem.label}: its positives differ from "
                             f"{job.problems[0].label}'s; stacked runs share theirs")
    runs = [(problem, points, seed)
            for problem, points in zip(job.problems, (x.float() for x, _ in data), strict=True)
            for seed in job.seeds]
    regs = [seeded_regularizer(positive, job.variant, seed, x.shape[1]) for _, x, seed in runs]

    def exact(reg: F1Regularizer, x: torch.Tensor):
        def evaluate(_model) -> dict:
            # the learned scorer f = (w.x + b) / eps on every example, not the tables' stale
            # scores of the examples last seen
            w, b, eps = reg.scorer()
            s = x @ w + b
            return {"exact_f1_bound": hinge_f1_bound(s, positive, eps),
                    "true_f1": f1_score(s, positive)}
        return evaluate

    start = time.perf_counter()
    results = train_runs([FixedFeatures(x) for _, x, _ in runs],
                         TensorData(torch.arange(len(positive)), None, positive), regs,
                         seeds=[seed for _, _, seed in runs], schedule=job.schedule,
                         evaluate=[exact(reg, x) for reg, (_, x, _) in zip(regs, runs,
                                                                          strict=True)],
                         progress=progress or False)
    wall = (time.perf_counter() - start) / len(runs)
    return [row for (problem, _, seed), result in zip(runs, results, strict=True)
            for row in tagged_rows({"problem": problem.label, "variant": job.variant,
                                    "seed": seed}, result, wall)]


def lp_jobs(problems: list[Problem], variants: list[str], seeds: int,
            schedule: Schedule) -> list[Job]:
    """One job per variant and size of problem (n_examples, positive_fraction): every run
    that can be stacked is, as a stacked step of 30 such runs costs about what one of
    five does (benchmarks/lp_runs.py)."""
    variants = check_variants(variants)
    sizes: dict[tuple[int, float], list[Problem]] = {}
    for problem in problems:
        sizes.setdefault((problem.n_examples, problem.positive_fraction), []).append(problem)
    return [Job(tuple(group), variant, tuple(range(seeds)), schedule)
            for variant in variants for group in sizes.values()]


def run_lp_study(problems: list[Problem], variants: list[str], seeds: int, schedule: Schedule,
                 workers: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, reference): one history row per run and outer loop; the exact LPs.

    workers: processes (0: one per CPU core; 1: run here, in this process),
        each training one job (`lp_jobs`) at a time. Their steps move one progress
        bar here (`f1lib.progress`), counted in run-steps.
    """
    jobs = lp_jobs(problems, variants, seeds, schedule)
    workers = workers or os.cpu_count() or 1
    runs = sum(job.runs for job in jobs)
    with progress_bar(total=sum(job.runs * job.steps for job in jobs), desc=f"train {runs} runs",
                      unit=" run-step", unit_scale=True) as bar:
        results = _train_jobs(jobs, workers, bar) if workers > 1 else \
            [run_job(job, lambda n, r=job.runs: bar.update(n * r)) for job in jobs]
    history = pd.DataFrame([row for rows in results for row in rows])
    reference = pd.DataFrame([lp_reference(p) for p in problems])
    return history, reference


def _train_jobs(jobs: list[Job], workers: int, bar) -> list[list[dict]]:
    """`run_job` of each job in a pool of `workers` processes, their steps shown on `bar`
    in run-steps."""
    # spawn, not fork: forking a process that already runs torch threads can hang
    context = multiprocessing.get_context("spawn")
    reports = context.Queue()  # (job, steps): each worker's progress
    done = [0] * len(jobs)

    def show(j: int, n: int) -> None:
        # a report can arrive after its job's end
        n = min(n, jobs[j].steps - done[j])
        done[j] += n
        bar.update(n * jobs[j].runs)

    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context,
                             initializer=_start_worker,
                             initargs=(reports, REPORT_INTERVAL_S)) as pool:
        futures = {pool.submit(_pool_job, j, job): j for j, job in enumerate(jobs)}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            while not reports.empty():
                show(*reports.get())
            for future in finished:
                future.result()  # a worker's error, raised here
                show(futures[future], float("inf"))  # the steps it had not reported yet
        return [future.result() for future in futures]


def _start_worker(reports, interval: float) -> None:
    _WORKER.update(reports=reports, interval=interval)
    torch.set_num_threads(1)  # the workers already fill the cores


def _pool_job(index: int, job: Job) -> list[dict]:
    """`run_job` in a pool worker, its steps sent to the parent's bar in bunches."""
    pending, sent_at = 0, time.monotonic()

    def report(steps: int) -> None:
        nonlocal pending, sent_at
        pending += steps
        if time.monotonic() - sent_at >= _WORKER["interval"]:
            _WORKER["reports"].put((index, pending))
            pending, sent_at = 0, time.monotonic()

    return run_job(job, report)


def lp_summary(history: pd.DataFrame, reference: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(each run's last row with its LP's bound and `gap`, the learned bound over the LP's;
    per problem and variant, the runs, how many finished, and the means over the finished
    runs of the bound, gap, violation and true F1, each with its 95% interval). A diverged
    run's last row is where it stopped."""
    last = history[history["outer"] == history.groupby(["problem", "variant", "seed"])["outer"]
                   .transform("max")].copy()
    ref = reference.set_index("problem")
    last["lp_bound"] = [ref.loc[p, "lp_bound_bias" if VARIANT_HAS_BIAS[v] else "lp_bound_no_bias"]
                        for p, v in zip(last["problem"], last["variant"])]
    last["gap"] = last["exact_f1_bound"] / last["lp_bound"]

    def summarise(frame: pd.DataFrame) -> pd.Series:
        finished = frame[frame["status"] == "finished"]
        out = {"lp_bound": frame["lp_bound"].iloc[0], "runs": len(frame),
               "finished": len(finished)}
        for column in ("exact_f1_bound", "gap", "violation", "true_f1"):
            mean, low, high = (mean_ci(finished[column].to_numpy()) if len(finished)
                               else (float("nan"),) * 3)
            out[column] = mean
            out[column + "_ci"] = f"[{low:.3f}, {high:.3f}]"
        return pd.Series(out)

    summary = (last.groupby(["problem", "variant"], sort=False)
               .apply(summarise, include_groups=False).reset_index())
    return last, summary
