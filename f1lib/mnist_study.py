"""Does F1 regularization help on big/small MNIST? The runs behind book/mnist.ipynb.

The runs and their comparison are f1lib.study's. The successor (Ravi et al.
2020) trained its baseline with a 10x smaller learning rate than its F1
runs; here the learning rate is the same for all, and that baseline is one
more run ("baseline, lr x 0.1") to show what the step size alone does.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .config import Schedule
from .data.mnist import SMnist
from .lp import f1_score, hinge_f1_bound
from .metrics import accuracy_by_group
from .models import SharedHeadMLP
from .regularizer import F1Regularizer
from .study import Run, run_split_study, train_split


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


def train_batch(runs: list[Run], train_set: SMnist, test_set: SMnist, schedule: Schedule,
                checkpoint: Path | None = None, f1_head: bool = True,
                graph: bool = False, tf32: bool = False) -> list[list[dict]]:
    """Runs of one batch key (f1lib.study.batch_key), trained together: each
    run's history rows, tagged with the run and its status.

    f1_head: the paper's one-unit F1 head on the shared layer (True), or the
    regularizer's hyperplane over the 500 hidden units (see SharedHeadMLP).
    graph: replay the inner step as a CUDA graph (CUDA only).
    tf32: float32 matrix products on TF32 tensor cores (CUDA only).
    """
    device = train_set.images.device
    in_features = train_set.images[0].numel()
    rows, _ = train_split(
        runs, lambda: SharedHeadMLP(in_features=in_features, f1_head=f1_head).to(device),
        train_set, test_set, schedule, evaluation, checkpoint, graph=graph, tf32=tf32)
    return rows


def run_mnist_study(runs: list[Run], train_set: SMnist, test_set: SMnist, schedule: Schedule,
                    work_dir: Path, f1_head: bool = True, graph: bool = False,
                    tf32: bool = False) -> pd.DataFrame:
    """Every run's history, one row per run and outer loop, resumable (f1lib.study.run_study).

    On CUDA, runs that differ in seed and beta only train together: the step
    is launch-bound there, and R stacked runs cost about one. On the CPU the
    step is compute-bound and stacked matrix products are slower than separate
    ones, so runs train one at a time; either way each run's result is the same,
    to rounding.
    """
    def train_one_batch(batch: list[Run], checkpoint: Path) -> list[list[dict]]:
        return train_batch(batch, train_set, test_set, schedule, checkpoint, f1_head, graph, tf32)

    max_together = None if train_set.images.device.type == "cuda" else 1
    return run_split_study(runs, train_one_batch, train_set, test_set, schedule, work_dir,
                           [f1_head, tf32], max_together=max_together)  # tf32 moves results


# what the notebook summarises, per method
SUMMARY_COLUMNS = ("acc", "acc_big", "acc_small", "gap", "head_f1", "violation")
