"""Algorithm 1 (the paper's dual ascent procedure) for any model.

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

`train_runs` trains several runs of one experiment together (seeds, betas):
stacked, as one vmapped step, or side by side, each run's own step in turn. How
a step is built, for one run or many, and captured as a CUDA graph on CUDA
(`graph=True`), is `f1lib.steps`; how a stopped run resumes, `f1lib.checkpoint`.
"""

from __future__ import annotations

import math
import operator
import os
from dataclasses import asdict
from pathlib import Path
from time import monotonic  # this module's own name for it: tests move its clock
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoint import Position, load_checkpoint, save_checkpoint
from .config import Schedule
from .fingerprint import tensor_digest
from .hardware import tf32_matmuls
from .progress import progress_bar
from .regularizer import F1Regularizer
from .signals import HeldSignals
from .steps import CapturedStep, RunLoss, make_batched_step, param_groups, side_by_side, \
    single_run_step
from .tensor_data import TensorData, batch_order

Evaluate = Callable[[nn.Module], dict]


class NonFiniteError(FloatingPointError):
    """Training produced NaN or inf.

    `history` holds the rows of the outer loops that finished before it, and
    `outer` the outer loop (from 1) where it happened.
    """

    def __init__(self, message: str, history: list[dict] | None = None, outer: int = 0):
        super().__init__(message)
        self.history = list(history or [])
        self.outer = outer


def train_runs(
    models: Sequence[nn.Module],
    data: TensorData,
    regularizers: Sequence[F1Regularizer | None] | None = None,
    *,
    seeds: Sequence[int],
    schedule: Schedule = Schedule(),
    task_loss: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    evaluate: Evaluate | Sequence[Evaluate] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_interval: float = 0.0,
    progress: bool | Callable[[int], None] | None = None,
    bf16: bool = False,
    graph: bool = False,
    tf32: bool = False,
    stack: bool = True,
) -> list[list[dict] | NonFiniteError]:
    """Algorithm 1 for R runs at once: each run's history, or its NonFiniteError.

    Run r trains models[r] with regularizers[r] on minibatches ordered by
    seeds[r], as `train` would alone. With R > 1 and `stack`, the runs are
    stacked and trained by one vmapped step (their models must share an
    architecture and their regularizers differ in beta only). With
    `stack=False` they train side by side (`side_by_side`): each run's own step
    in turn, on CUDA each on a stream of its own, and as one graph of parallel
    branches with `graph`; the runs may then differ in anything but the
    schedule. Either way the modules keep being updated in place, and
    `evaluate` (one callable, or one per run) sees each run's model. A run that
    turns non-finite stops there: its entry is the NonFiniteError (with the
    rows before it) while the others go on.

    Batched, each run computes what it would alone up to floating-point
    rounding (tests/test_train_runs.py); a network that amplifies rounding,
    such as SegNet's batch norms over a handful of values at its 1x1
    bottleneck, drifts further apart within a few steps. Ops without a vmap
    batching rule (max_unpool2d) fall back to a loop over the runs, with a
    PyTorch warning: f1lib.sky_study trains SegNet runs side by side instead.

    Other arguments as in `train`.
    """
    regularizers, seeds, evaluators = _checked_runs(
        models, data, regularizers, seeds, schedule, evaluate, checkpoint_interval, graph)
    runs = [RunLoss(m, reg, data, task_loss, bf16)
            for m, reg in zip(models, regularizers, strict=True)]
    step, optimizers = _inner_step(runs, schedule, stack, data.inputs.device)
    loop = _Loop(runs, optimizers, step, data, seeds, schedule, evaluators, graph)
    if checkpoint is not None:
        loop.keep_checkpoints(Path(checkpoint), checkpoint_interval)
    on_steps = progress if callable(progress) else None
    done = loop.position.outer * schedule.inner + loop.position.inner
    count = len(runs)
    with progress_bar(total=schedule.outer * schedule.inner, initial=done,
                      show=False if on_steps is not None else progress,
                      desc="train" if count == 1 else f"train {count} runs", unit="step") as bar, \
            tf32_matmuls(tf32 and data.inputs.device.type == "cuda"), \
            HeldSignals(active=checkpoint is not None) as stop:
        loop.run(bar, on_steps, stop)
    return [loop.failed.get(r, loop.position.histories[r]) for r in range(count)]


def _checked_runs(models, data, regularizers, seeds, schedule, evaluate, checkpoint_interval,
                  graph) -> tuple[list, list[int], list]:
    """train_runs' arguments, checked: (regularizers, seeds, evaluators), one per run."""
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be an f1lib.Schedule, got {type(schedule).__name__}")
    count = len(models)
    regularizers = list(regularizers) if regularizers is not None else [None] * count
    seeds = list(seeds)
    if count == 0 or len(regularizers) != count or len(seeds) != count:
        raise ValueError(f"need as many regularizers and seeds as models, at least one: got "
                         f"{count} models, {len(regularizers)} regularizers, {len(seeds)} seeds")
    if not checkpoint_interval >= 0:
        raise ValueError(f"checkpoint_interval is in seconds, at least 0: got "
                         f"{checkpoint_interval}")
    evaluators = list(evaluate) if isinstance(evaluate, Sequence) else [evaluate] * count
    if len(evaluators) != count:
        raise ValueError(f"evaluate: {len(evaluators)} callables for {count} runs")
    try:  # numpy's integers too; a string would only fail inside batch_order's arithmetic
        seeds = [operator.index(seed) for seed in seeds]
    except TypeError:
        raise ValueError(f"seeds must be integers, got {seeds!r}") from None
    n = len(data)
    device = data.inputs.device
    if graph and device.type != "cuda":
        raise ValueError(f"graph=True captures a CUDA graph: the data is on {device}")
    for reg in regularizers:
        if reg is None:
            continue
        if reg.num_examples != n:
            raise ValueError(
                f"the regularizer's tables cover {reg.num_examples} examples, the data {n}"
            )
        # once for the whole dataset, instead of per batch (where it would sync)
        reg.check_labels(data.positive, torch.arange(n, device=device))
    if schedule.batch_size > n:
        raise ValueError(f"batch_size {schedule.batch_size} is larger than the data's {n} "
                         "examples: every minibatch would repeat examples")
    return regularizers, seeds, evaluators


def _inner_step(runs: list[RunLoss], schedule: Schedule, stack: bool, device):
    """(step, optimizers): one optimizer per run side by side, one for a stack."""
    if len(runs) == 1 or not stack:
        optimizers = [torch.optim.SGD(param_groups(run, schedule)) for run in runs]
        step = side_by_side([single_run_step(run, opt)
                             for run, opt in zip(runs, optimizers, strict=True)],
                            streams=len(runs) > 1 and device.type == "cuda")
        return step, optimizers
    step, optimizer = make_batched_step(runs, schedule)
    return step, [optimizer]


class _Loop:
    """Algorithm 1's two loops over R runs, where they stand, and their checkpoints."""

    def __init__(self, runs, optimizers, step, data: TensorData, seeds: list[int],
                 schedule: Schedule, evaluators: list, graph: bool):
        self.runs, self.optimizers, self.seeds = runs, optimizers, seeds
        self.schedule, self.evaluators, self.n = schedule, evaluators, len(data)
        self.device = data.inputs.device
        self.position = Position([[] for _ in runs])
        self.failed: dict[int, NonFiniteError] = {}
        self.path: Path | None = None
        self.interval = 0.0
        self._ids: list[dict] | None = None
        # per outer loop: the sums of every run's task loss and Lagrangian
        self.totals = torch.zeros(2, len(runs), device=self.device)

        def step_and_sum(idx: Tensor) -> None:
            task, lagrangian = step(idx)
            self.totals[0] += task
            self.totals[1] += lagrangian

        self.inner_step = CapturedStep(step_and_sum) if graph else step_and_sum
        self.began = self.saved_at = monotonic()

    def keep_checkpoints(self, path: Path, interval: float) -> None:
        """Write checkpoints to `path`, resuming from it when it exists."""
        self.path, self.interval = path, interval
        # now, not at the first checkpoint, after an outer loop of training
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            self.position = load_checkpoint(path, self.run_ids(), self.runs, self.optimizers,
                                            self.device)
            histories = self.position.histories
            self.failed = {r: NonFiniteError(message, histories[r], outer)
                           for r, (message, outer) in self.position.failed.items()}
        self.began = self.saved_at = monotonic()

    def run_ids(self) -> list[dict]:
        """What a checkpoint must match to resume these runs: each run's seed, schedule,
        regularizer (variant, hyperparameters, a digest of its positives) and shapes."""
        if self._ids is None:
            self._ids = [{"seed": seed, "schedule": self.schedule.as_dict(),
                          "regularizer": _regularizer_id(run.regularizer),
                          "shapes": {k: list(v.shape) for k, v in run.state_dict().items()}}
                         for seed, run in zip(self.seeds, self.runs, strict=True)]
        return self._ids

    def save(self, outer: int, inner: int = 0) -> None:
        """The checkpoint after `outer` whole outer loops and `inner` steps of the next."""
        before = self.position.elapsed_s
        self.saved_at = monotonic()
        position = Position(
            self.position.histories, outer, inner, self.totals.cpu(),
            {r: (str(err), err.outer) for r, err in self.failed.items()},
            before + self.saved_at - self.began)
        save_checkpoint(self.path, self.run_ids(), self.runs, self.optimizers, position)

    def outer_order(self, outer: int) -> Tensor:
        """Every run's minibatches of one outer loop, (inner, R, B), on the device."""
        s = self.schedule
        order = torch.stack([batch_order(seed, outer, s.inner, s.batch_size, self.n)
                             for seed in self.seeds], dim=1)
        if self.device.type == "cuda":  # from pinned memory, a copy does not wait for the device
            return order.pin_memory().to(self.device, non_blocking=True)
        return order.to(self.device)

    def run(self, bar, on_steps, stop: HeldSignals) -> None:
        """Train from where the runs stand to the schedule's end, or to a held signal."""
        start, start_inner = self.position.outer, self.position.inner
        outers = self.schedule.outer
        order = self.outer_order(start) if start < outers else None
        for outer in range(start, outers):
            if len(self.failed) == len(self.runs):
                break
            first = start_inner if outer == start else 0
            self.inner_loops(order, outer, first, bar, on_steps, stop)
            # the next loop's minibatches are drawn while the device works through this
            # loop's queued steps, not after
            if outer + 1 < outers:
                order = self.outer_order(outer + 1)
            self.record(outer, bar)
            final = outer + 1 == outers
            if self.path is not None and (final or stop.signum is not None
                                          or monotonic() - self.saved_at >= self.interval):
                self.save(outer + 1)
            stop.act()

    def inner_loops(self, order: Tensor, outer: int, first: int, bar, on_steps,
                    stop: HeldSignals) -> None:
        """Steps `first` .. inner - 1 of outer loop `outer`, summing their losses."""
        for run in self.runs:
            run.train()
        if first:
            self.totals.copy_(self.position.totals)
        else:
            self.totals.zero_()
        inner = self.schedule.inner
        every = max(1, inner // 20)
        reported = first
        for k in range(first, inner):
            self.inner_step(order[k])
            stopping = stop.signum is not None and k + 1 < inner
            if stopping or (k + 1) % every == 0 or k + 1 == inner:
                bar.update(k + 1 - reported)
                if on_steps is not None:
                    on_steps(k + 1 - reported)
                reported = k + 1
            if stopping:  # mid-loop; at the loop's end the outer loop's save serves
                self.save(outer, k + 1)  # the steps queued so far are in it
                stop.act()  # raises, or ends the process

    def record(self, outer: int, bar) -> None:
        """Each run's dual step and history row after outer loop `outer`."""
        mean = (self.totals / self.schedule.inner).cpu()
        histories = self.position.histories
        for r, run in enumerate(self.runs):
            if r in self.failed:
                continue
            row = _outer_row(run, outer, self.schedule, mean[:, r], self.evaluators[r])
            if isinstance(row, str):
                last = histories[r][-1] if histories[r] else \
                    "none (it failed in the first outer loop)"
                self.failed[r] = NonFiniteError(
                    f"non-finite {row} at outer loop {outer + 1} of {self.schedule.outer}; "
                    f"last finite values: {last}", history=histories[r], outer=outer + 1)
                continue
            histories[r].append(row)
        if len(self.runs) == 1 and histories[0]:
            row = histories[0][-1]
            bar.set_postfix({k: f"{row[k]:.4g}" for k in ("task_loss", "f1_bound") if k in row})


def _regularizer_id(regularizer: F1Regularizer | None) -> dict | None:
    if regularizer is None:
        return None
    return {"variant": regularizer.variant, "hyper": asdict(regularizer.hyper),
            "positives": tensor_digest(regularizer.is_positive)}


def _to_float(row: dict) -> dict:
    return {k: (float(v) if isinstance(v, Tensor) else v) for k, v in row.items()}


def _outer_row(run: RunLoss, outer: int, schedule: Schedule, mean: Tensor,
               evaluate: Callable[[nn.Module], dict] | None) -> dict | str:
    """One run's history row after an outer loop (its dual step included), or,
    when it turned non-finite, the names of what did."""
    row = {"outer": outer + 1, "step": (outer + 1) * schedule.inner,
           "task_loss": float(mean[0])}
    regularizer = run.regularizer
    if regularizer is not None:
        regularizer.dual_step()
        row["lagrangian"] = float(mean[1])
        row.update(regularizer.diagnostics())
    finite = torch.stack([p.detach().isfinite().all() for p in run.parameters()]).all()
    row = _to_float(row)
    bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
    if not bool(finite):
        bad.append("parameters")
    if bad:
        return ", ".join(bad)
    if evaluate is not None:
        run.model.eval()
        with torch.no_grad():
            row.update(_to_float(evaluate(run.model)))
        run.model.train()
    return row


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
    checkpoint_interval: float = 0.0,
    progress: bool | Callable[[int], None] | None = None,
    bf16: bool = False,
    graph: bool = False,
    tf32: bool = False,
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
        checkpoint: a file written after outer loops; if it exists, the run
            resumes from it and ends as an uninterrupted run would (a checkpoint of
            another run is refused). While training with one, SIGINT and SIGTERM
            are held until the step in flight ends (`HeldSignals`), the file is
            written at that step, and the signal then acts: no step is lost.
        checkpoint_interval: seconds; when positive, the checkpoint is written only
            after outer loops that end at least this long after the last write, and
            after the last one. A kill then loses up to this long and an outer loop.
        progress: draw a progress bar; None: on a terminal or in a notebook, unless
            $F1LIB_PROGRESS says otherwise (`f1lib.progress`). A callable instead
            gets the number of steps done since its last call.
        bf16: run the model under bfloat16 autocast (for convolutions on CUDA).
        graph: capture the inner step as a CUDA graph and replay it (CUDA only).
        tf32: on CUDA, float32 matrix products run on TF32 tensor cores while
            training (`tf32_matmuls`: 10 bits of mantissa, float32 range and
            accumulation); ignored on the CPU.

    Raises NonFiniteError when training turns NaN or infinite.
    """
    result, = train_runs([model], data, [regularizer], seeds=[seed], schedule=schedule,
                         task_loss=task_loss, evaluate=evaluate, checkpoint=checkpoint,
                         checkpoint_interval=checkpoint_interval, progress=progress, bf16=bf16,
                         graph=graph, tf32=tf32)
    if isinstance(result, NonFiniteError):
        raise result
    return result
