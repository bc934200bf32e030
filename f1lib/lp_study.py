"""Does Algorithm 1 reach the LP's F1 bound? The runs behind book/lp_bound.ipynb.

On fixed 2-D features the LP (5)-(9) can be solved exactly, so every run of
Algorithm 1 has a ground truth: its learned scorer's hinge bound against the
LP optimum. Runs are tiny, so their steps cost Python and dispatch, not
arithmetic: the seeds of one problem and variant train stacked as one vmapped
step (f1lib.train_runs), which costs about twice one run's step, for five seeds
as for three (benchmarks/lp_runs.py), and these jobs go to a pool of CPU
processes rather than to a GPU.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm import tqdm

from .config import F1Hyper, Schedule
from .data.gaussians import gaussian_problem
from .lp import f1_score, hinge_f1_bound, solve_lp
from .models import FixedFeatures
# lp_bound.ipynb imports VARIANT_HAS_BIAS from this module
from .regularizer import VARIANT_HAS_BIAS, F1Regularizer  # noqa: F401
from .study import tagged_rows
from .train import TensorData, train_runs

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


@dataclass(frozen=True)
class Job:
    """The runs of one problem and variant, one per seed, trained together."""
    problem: Problem
    variant: str
    seeds: tuple[int, ...]
    schedule: Schedule


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


def run_job(job: Job) -> list[dict]:
    """The job's runs of Algorithm 1 (beta = 1: there is no task to weigh against),
    stacked: run r is what `f1lib.train` gives alone with seed r, to rounding.
    Each run's wall time is its share of the job's."""
    x, pos = job.problem.data()
    x = x.float()
    regs = []
    for seed in job.seeds:
        torch.manual_seed(seed)  # the paper variant's random initial values
        regs.append(F1Regularizer(pos, features=x.shape[1], variant=job.variant,
                                  hyper=F1Hyper(beta=1.0)))

    def exact(reg: F1Regularizer):
        def evaluate(_model) -> dict:
            # the learned scorer f = (w.x + b) / eps on every example, not the tables' stale
            # scores of the examples last seen
            w, b, eps = reg.scorer()
            s = x @ w + b
            return {"exact_f1_bound": hinge_f1_bound(s, pos, eps), "true_f1": f1_score(s, pos)}
        return evaluate

    start = time.perf_counter()
    results = train_runs([FixedFeatures() for _ in job.seeds], TensorData(x, None, pos), regs,
                         seeds=list(job.seeds), schedule=job.schedule,
                         evaluate=[exact(reg) for reg in regs], progress=False)
    wall = (time.perf_counter() - start) / len(job.seeds)
    return [row for seed, result in zip(job.seeds, results, strict=True)
            for row in tagged_rows({"problem": job.problem.label, "variant": job.variant,
                                    "seed": seed}, result, wall)]


def run_lp_study(problems: list[Problem], variants: list[str], seeds: int, schedule: Schedule,
                 workers: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, reference): one history row per run and outer loop; the exact LPs.

    workers: processes (0: one per CPU core; 1: run here, in this process),
        each training one problem and variant's seeds at a time.
    """
    jobs = [Job(p, v, tuple(range(seeds)), schedule) for p in problems for v in variants]
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(jobs) * seeds, desc="runs", disable=None)
    rows: list[dict] = []
    if workers == 1:
        for job in jobs:
            rows += run_job(job)
            bar.update(seeds)
    else:
        # spawn, not fork: forking a process that already runs torch threads can hang
        context = multiprocessing.get_context("spawn")
        # one thread each: the workers already fill the cores
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context,
                                 initializer=torch.set_num_threads, initargs=(1,)) as pool:
            for result in pool.map(run_job, jobs):
                rows += result
                bar.update(seeds)
    bar.close()
    history = pd.DataFrame(rows)
    reference = pd.DataFrame([lp_reference(p) for p in problems])
    return history, reference
