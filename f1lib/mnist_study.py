"""Does F1 regularization help on big/small MNIST? The runs behind book/mnist.ipynb.

The runs and their comparison are f1lib.study's. The successor (Ravi et al.
2020) trained its baseline with a 10x smaller learning rate than its F1
runs; here the learning rate is the same for all, and that baseline is one
more run ("baseline, lr x 0.1") to show what the step size alone does.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from .config import F1Hyper, Schedule
from .data.mnist import SMnist
from .lp import f1_score, hinge_f1_bound
from .metrics import accuracy_by_group
from .models import SharedHeadMLP
from .regularizer import F1Regularizer
from .study import Run, run_study, tagged_history
from .train import TensorData, train


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
    return tagged_history(run, lambda: train(model, data, reg, schedule=schedule, seed=run.seed,
                                             evaluate=evaluation(reg, test_set),
                                             checkpoint=checkpoint))


def run_mnist_study(runs: list[Run], train_set: SMnist, test_set: SMnist, schedule: Schedule,
                    work_dir: Path, f1_head: bool = True) -> pd.DataFrame:
    """Every run's history, one row per run and outer loop, resumable (f1lib.study.run_study)."""
    def train_one(run: Run, checkpoint: Path) -> list[dict]:
        return train_run(run, train_set, test_set, schedule, checkpoint, f1_head)

    return run_study(runs, train_one, work_dir, [schedule.as_dict(), len(train_set), f1_head])


# what the notebook summarises, per method
SUMMARY_COLUMNS = ("acc", "acc_big", "acc_small", "gap", "head_f1", "violation")
