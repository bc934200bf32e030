"""Does F1 regularization help on big/small MNIST? The runs behind book/mnist.ipynb.

Every run trains the same SharedHeadMLP with the same SGD step, schedule,
minibatch order and initial weights (all fixed by the seed); the runs differ
in the F1 term only:

  baseline  beta = 0. The network trains on the task alone (its gradients are
            bitwise those of no regularizer), while the stable variant's LP
            variables still fit the F1 head on the network's features, so the
            baseline has a head F1 to compare too.
  paper     the seed's equations and step sizes (F1Regularizer variant "paper").
  stable    the corrected Lagrangian (variant "stable").

The successor (Ravi et al. 2020) trained its baseline with a 10x smaller
learning rate than its F1 runs; here the learning rate is the same for all,
and that baseline is one more run ("baseline, lr x 0.1") to show what the
difference in step size alone does.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from .config import F1Hyper, Schedule
from .data.mnist import SMnist
from .lp import f1_score, hinge_f1_bound
from .metrics import accuracy_by_group
from .models import SharedHeadMLP
from .regularizer import F1Regularizer
from .stats import mean_ci
from .train import NonFiniteError, TensorData, train

METHODS = ("baseline", "paper", "stable")


@dataclass(frozen=True)
class Run:
    method: str
    beta: float
    seed: int
    lr_scale: float = 1.0  # of the schedule's learning rate

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {METHODS}")
        if self.method == "baseline" and self.beta != 0:
            raise ValueError("the baseline is beta = 0")
        if not self.lr_scale > 0:
            raise ValueError(f"lr_scale must be > 0, got {self.lr_scale!r}")

    @property
    def variant(self) -> str:
        return "stable" if self.method == "baseline" else self.method

    @property
    def label(self) -> str:
        name = "baseline" if self.method == "baseline" else f"{self.method}, β={self.beta:g}"
        return name if self.lr_scale == 1 else f"{name}, lr x {self.lr_scale:g}"


def run_matrix(variants: list[str], betas: list[float], seeds: int,
               successor_baseline: bool = False) -> list[Run]:
    """The baseline and every (variant, beta), each for seeds 0 .. seeds-1; with
    `successor_baseline`, also the baseline at a tenth of the learning rate."""
    methods = [("baseline", 0.0, 1.0)]
    if successor_baseline:
        methods.append(("baseline", 0.0, 0.1))
    methods += [(v, float(b), 1.0) for v in variants for b in betas]
    return [Run(m, b, s, scale) for s in range(seeds) for m, b, scale in methods]


def evaluation(regularizer: F1Regularizer, test: SMnist):
    """evaluate(model) for f1lib.train: test accuracy overall, on big and on small
    digits, and the F1 (and hinge F1 bound) of the F1 head's big/small call."""

    def evaluate(model) -> dict:
        logits, features = model(test.images)
        row = accuracy_by_group(logits, test.digits, {"big": test.big, "small": ~test.big})
        row["gap"] = row["acc_big"] - row["acc_small"]
        w, b, eps = regularizer.scorer()
        score = features @ w + b  # the head's decision f = (w.h + b)/eps has the same sign
        row["head_f1"] = f1_score(score, test.big)
        row["head_f1_bound"] = hinge_f1_bound(score, test.big, eps)
        return row

    return evaluate


def train_run(run: Run, train_set: SMnist, test_set: SMnist, schedule: Schedule,
              checkpoint: Path | None = None, f1_head: bool = True) -> list[dict]:
    """One run: its history rows, tagged with the run and its status.

    f1_head: the seed's one-unit F1 head on the shared layer (True), or the
    regularizer's hyperplane over the 500 hidden units (see SharedHeadMLP).
    """
    device = train_set.images.device
    schedule = replace(schedule, lr=schedule.lr * run.lr_scale)
    torch.manual_seed(run.seed)  # the same initial network for every method at a seed
    model = SharedHeadMLP(in_features=train_set.images[0].numel(), f1_head=f1_head).to(device)
    reg = F1Regularizer(train_set.big, features=model.f1_features, variant=run.variant,
                        hyper=F1Hyper(beta=run.beta)).to(device)
    data = TensorData(train_set.images, train_set.digits, train_set.big)
    tag = {"run": run.label, **asdict(run), "variant": run.variant}
    start = time.perf_counter()
    try:
        history = train(model, data, reg, schedule=schedule, seed=run.seed,
                        evaluate=evaluation(reg, test_set), checkpoint=checkpoint)
        status = "finished"
    except NonFiniteError as err:
        history, status = err.history, f"diverged at outer loop {err.outer}"
    tag["status"] = status
    tag["wall_s"] = round(time.perf_counter() - start, 2)
    if not history:
        return [{**tag, "outer": 0}]
    return [{**tag, **row} for row in history]


def _key(run: Run, schedule: Schedule, n_train: int, f1_head: bool) -> str:
    text = json.dumps([asdict(run), schedule.as_dict(), n_train, f1_head], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def run_mnist_study(runs: list[Run], train_set: SMnist, test_set: SMnist, schedule: Schedule,
                    work_dir: Path, f1_head: bool = True) -> pd.DataFrame:
    """Every run's history, one row per run and outer loop.

    Nothing is lost to an interruption: a run in progress checkpoints after
    every outer loop, a finished run leaves its rows in `work_dir`, and
    calling again with the same arguments resumes where it stopped. Delete
    `work_dir` once the results are saved.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for run in tqdm(runs, desc="runs", disable=None):
        key = _key(run, schedule, len(train_set), f1_head)
        done, ckpt = work_dir / f"{key}.json", work_dir / f"{key}.ckpt"
        if done.exists():
            rows += json.loads(done.read_text())
            continue
        result = train_run(run, train_set, test_set, schedule, checkpoint=ckpt, f1_head=f1_head)
        tmp = done.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        tmp.replace(done)
        ckpt.unlink(missing_ok=True)
        rows += result
    return pd.DataFrame(rows)


SUMMARY_COLUMNS = ("acc", "acc_big", "acc_small", "gap", "head_f1", "violation")


def final_rows(history: pd.DataFrame) -> pd.DataFrame:
    """The last outer loop of every finished run."""
    finished = history[history["status"] == "finished"]
    last = finished.groupby(["run", "seed"])["outer"].transform("max")
    return finished[finished["outer"] == last]


def summarize(history: pd.DataFrame) -> pd.DataFrame:
    """Per method: how many runs finished, and each metric's mean over the
    finished runs' final outer loop with its 95% interval."""
    runs = history.groupby("run", sort=False)
    last = final_rows(history).groupby("run", sort=False)
    out = []
    for label, frame in runs:
        first = frame.iloc[0]
        row = {"run": label, "method": first["method"], "beta": first["beta"],
               "runs": frame["seed"].nunique(),
               "finished": int((frame.groupby("seed")["status"].first() == "finished").sum())}
        final = last.get_group(label) if label in last.groups else None
        for column in SUMMARY_COLUMNS:
            if final is None or column not in final:
                row[column], row[f"{column}_low"], row[f"{column}_high"] = (float("nan"),) * 3
                continue
            mean, low, high = mean_ci(final[column].to_numpy())
            row[column], row[f"{column}_low"], row[f"{column}_high"] = mean, low, high
        out.append(row)
    return pd.DataFrame(out)
