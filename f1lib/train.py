"""Algorithm 1 (the seed's dual ascent procedure) for any model.

The model returns `(task_output, f1_score)`; the task loss is computed on the
first, the F1 regularizer on the second. The data sits on the model's device
and minibatches are drawn by dataset index, so the regularizer's tables are
addressed with the same indices.

    for each outer loop:
        for each inner loop:
            sample a minibatch; loss = task loss + regularizer
            SGD step on the model and on tau, eps, w; project
        dual step on mu, lambda, gamma

The history has one row per outer loop. Nothing in the inner loop reads a
value back from the device: the one synchronisation per outer loop is where
the history row is made (and checked for NaN/inf).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from .config import Schedule
from .regularizer import F1Regularizer


@dataclass
class TensorData:
    """A training set held in tensors: row i of each is dataset index i.

    inputs: (N, ...) model inputs; targets: (N, ...) task targets, or None when
    there is no task; positive: (N,) bool, the F1 regularizer's I+.
    """

    inputs: Tensor
    targets: Tensor | None
    positive: Tensor

    def __post_init__(self):
        n = self.inputs.shape[0]
        if self.targets is not None and self.targets.shape[0] != n:
            raise ValueError(f"targets has {self.targets.shape[0]} rows, inputs {n}")
        if self.positive.shape != (n,) or self.positive.dtype != torch.bool:
            raise ValueError(
                f"positive must be a bool tensor of shape ({n},); got "
                f"{self.positive.dtype} {tuple(self.positive.shape)}"
            )

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def to(self, device) -> "TensorData":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return TensorData(move(self.inputs), move(self.targets), move(self.positive))


def batch_order(seed: int, outer: int, inner: int, batch_size: int, n: int) -> Tensor:
    """The (inner, batch_size) dataset indices of outer loop `outer`.

    Epochs of random permutations, drawn on the CPU from a generator seeded by
    (seed, outer): the same order on every device, and a resumed run replays
    it exactly.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + outer)
    epochs = math.ceil(inner * batch_size / n)
    perm = torch.cat([torch.randperm(n, generator=g) for _ in range(epochs)])
    return perm[: inner * batch_size].view(inner, batch_size)


class NonFiniteError(FloatingPointError):
    """Training produced NaN or inf.

    `history` holds the rows of the outer loops that finished before it, and
    `outer` the outer loop (from 1) where it happened.
    """

    def __init__(self, message: str, history: list[dict] | None = None, outer: int = 0):
        super().__init__(message)
        self.history = list(history or [])
        self.outer = outer


def _to_float(row: dict) -> dict:
    return {k: (float(v) if isinstance(v, Tensor) else v) for k, v in row.items()}


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def make_step(model: nn.Module, data: TensorData, regularizer: F1Regularizer | None,
              optimizer: torch.optim.Optimizer, task_loss: Callable[[Tensor, Tensor], Tensor],
              bf16: bool = False):
    """Algorithm 1's inner step on the minibatch `idx`: returns (task loss, Lagrangian).

    Both come back as device tensors: nothing here waits for the device, so
    the step can run ahead of it, or be captured in a CUDA graph. With `bf16`
    the model and the task loss run under bfloat16 autocast; the regularizer
    always computes in float32.
    """
    device = data.inputs.device
    zero = torch.zeros((), device=device)

    def step(idx: Tensor) -> tuple[Tensor, Tensor]:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            task_output, f1_output = model(data.inputs[idx])
            task = zero
            if task_output is not None and data.targets is not None:
                task = task_loss(task_output, data.targets[idx])
        loss, lagrangian = task, zero
        if regularizer is not None:
            # train() checked every label against the table before the first step
            loss = task + regularizer(f1_output, data.positive[idx], idx, check_labels=False)
            lagrangian = regularizer.last_lagrangian
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if regularizer is not None:
            regularizer.project_()
        return task.detach(), lagrangian

    return step


def train(
    model: nn.Module,
    data: TensorData,
    regularizer: F1Regularizer | None = None,
    *,
    schedule: Schedule = Schedule(),
    seed: int = 0,
    task_loss: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    evaluate: Callable[[nn.Module], dict] | None = None,
    checkpoint: str | os.PathLike | None = None,
    progress: bool | None = None,
    bf16: bool = False,
) -> list[dict]:
    """Run Algorithm 1 and return the history, one dict per outer loop.

    Args:
        model: returns (task_output, f1_score) for a batch of inputs;
            task_output may be None when there is no task.
        data: the training set, on the model's device.
        regularizer: the F1 regularizer (None trains the task alone).
        schedule: outer x inner loops, batch size and the model's SGD step.
        seed: fixes the minibatch order.
        task_loss: loss(task_output, targets) of the primary task.
        evaluate: called after each outer loop; its dict joins the history.
        checkpoint: a file written after every outer loop; if it exists, the
            run resumes from it and ends as an uninterrupted run would.
        progress: tqdm bar; None shows it on a terminal only.
        bf16: run the model under bfloat16 autocast (for convolutions on CUDA).
    """
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be an f1lib.Schedule, got {type(schedule).__name__}")
    n = len(data)
    device = data.inputs.device
    if regularizer is not None:
        if regularizer.num_examples != n:
            raise ValueError(
                f"the regularizer's tables cover {regularizer.num_examples} examples, the data {n}"
            )
        # once for the whole dataset, instead of per batch (where it would sync)
        regularizer.check_labels(data.positive, torch.arange(n, device=device))

    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": trainable, "lr": schedule.lr, "name": "model"}] if trainable else []
    if regularizer is not None:
        groups += regularizer.param_groups()
    if not groups:
        raise ValueError("nothing to train: the model and the regularizer have no parameters")
    optimizer = torch.optim.SGD(groups)

    history: list[dict] = []
    start = 0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    run_id = {"seed": seed, "schedule": schedule.as_dict()}
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        if state["run"] != run_id:
            raise ValueError(
                f"checkpoint {ckpt} belongs to another run ({state['run']}), not {run_id}"
            )
        model.load_state_dict(state["model"])
        if regularizer is not None:
            regularizer.load_state_dict(state["regularizer"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        history, start = state["history"], state["outer"]

    params = [p for g in groups for p in g["params"]]
    step_fn = make_step(model, data, regularizer, optimizer, task_loss, bf16)
    every = max(1, schedule.inner // 20)
    bar = tqdm(total=schedule.outer * schedule.inner, initial=start * schedule.inner,
               disable=None if progress is None else not progress, desc="train", unit="step")
    try:
        for outer in range(start, schedule.outer):
            model.train()
            order = batch_order(seed, outer, schedule.inner, schedule.batch_size, n).to(device)
            task_sum = torch.zeros((), device=device)
            lagrangian_sum = torch.zeros((), device=device)
            reported = 0
            for step in range(schedule.inner):
                task_value, lagrangian = step_fn(order[step])
                task_sum += task_value
                lagrangian_sum += lagrangian
                if (step + 1) % every == 0 or step + 1 == schedule.inner:
                    bar.update(step + 1 - reported)
                    reported = step + 1
            row = {"outer": outer + 1, "step": (outer + 1) * schedule.inner,
                   "task_loss": task_sum / schedule.inner}
            if regularizer is not None:
                regularizer.dual_step()
                row["lagrangian"] = lagrangian_sum / schedule.inner
                row.update(regularizer.diagnostics())
            finite = torch.stack([p.detach().isfinite().all() for p in params]).all()
            row = _to_float(row)
            bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
            if not bool(finite):
                bad.append("parameters")
            if bad:
                last = history[-1] if history else "none (it failed in the first outer loop)"
                raise NonFiniteError(
                    f"non-finite {', '.join(bad)} at outer loop {outer + 1} of "
                    f"{schedule.outer}; last finite values: {last}",
                    history=history, outer=outer + 1,
                )
            if evaluate is not None:
                model.eval()
                with torch.no_grad():
                    row.update(_to_float(evaluate(model)))
            history.append(row)
            bar.set_postfix({k: f"{row[k]:.4g}" for k in ("task_loss", "f1_bound") if k in row})
            if ckpt is not None:
                _save_atomic({
                    "run": run_id, "outer": outer + 1, "history": history,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "regularizer": regularizer.state_dict() if regularizer is not None else None,
                    "rng": torch.get_rng_state(),
                }, ckpt)
    finally:
        bar.close()
    return history
