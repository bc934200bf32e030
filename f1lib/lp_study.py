"""Does Algorithm 1 reach the LP's F1 bound? The runs behind book/lp_bound.ipynb.

On fixed 2-D features the LP (5)-(9) can be solved exactly, so every run of
Algorithm 1 has a ground truth: its learned scorer's hinge bound against the
LP optimum. Runs are independent and tiny, so they go to a pool of CPU
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
    problem: Problem
    variant: str
    seed: int
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
    """One run of Algorithm 1 (beta = 1: there is no task to weigh against)."""
    torch.set_num_threads(1)
    torch.manual_seed(job.seed)
    x, pos = job.problem.data()
    x = x.float()
    reg = F1Regularizer(pos, features=x.shape[1], variant=job.variant, hyper=F1Hyper(beta=1.0))

    def exact(_model) -> dict:
        # the learned scorer f = (w.x + b) / eps on every example, not the tables' stale scores
        w, b, eps = reg.scorer()
        s = x @ w + b
        return {"exact_f1_bound": hinge_f1_bound(s, pos, eps), "true_f1": f1_score(s, pos)}

    base = {"problem": job.problem.label, "variant": job.variant, "seed": job.seed}
    start = time.perf_counter()
    (result,) = train_runs([FixedFeatures()], TensorData(x, None, pos), [reg], seeds=[job.seed],
                           schedule=job.schedule, evaluate=exact, progress=False)
    return tagged_rows(base, result, time.perf_counter() - start)


def run_lp_study(problems: list[Problem], variants: list[str], seeds: int, schedule: Schedule,
                 workers: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, reference): one history row per run and outer loop; the exact LPs.

    workers: processes (0: one per CPU core; 1: run here, in this process).
    """
    jobs = [Job(p, v, s, schedule) for p in problems for v in variants for s in range(seeds)]
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(jobs), desc="runs", disable=None)
    rows: list[dict] = []
    if workers == 1:
        for job in jobs:
            rows += run_job(job)
            bar.update()
    else:
        # spawn, not fork: forking a process that already runs torch threads can hang
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
            for result in pool.map(run_job, jobs):
                rows += result
                bar.update()
    bar.close()
    history = pd.DataFrame(rows)
    reference = pd.DataFrame([lp_reference(p) for p in problems])
    return history, reference
