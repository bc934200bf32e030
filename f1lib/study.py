"""An experiment's runs, compared: the run matrix, resumable execution, summaries.

Every run of an experiment trains the same model with the same optimizer,
schedule, minibatch order and initial weights (all fixed by its seed); the
runs differ in the F1 term only:

  baseline  beta = 0. The network trains on the task alone (its gradients are
            bitwise those of no regularizer), while the stable variant's LP
            variables still fit the F1 head's output, so the baseline has a
            head F1 to compare too.
  paper     the paper's equations and step sizes (F1Regularizer variant "paper").
  stable    the corrected Lagrangian (variant "stable").

A run's results are history rows (one per outer loop). Runs train together
(`train_together`, through f1lib.training.train_runs): stacked, when they differ in
seed and beta only, or side by side, when they share a learning rate.
`run_study` keeps every finished run and the checkpoint of the batch in
progress in a folder, so an interrupted study resumes where it stopped; its files
are keyed on the source that trains the runs and on their data (`f1lib.fingerprint`).
`train_split` and `run_split_study` are the skeleton that the MNIST and sky studies share:
a training and a test set, each with `images`, `targets` and `big` (the F1 positives).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from time import monotonic  # this module's own name for it: tests move its clock
from typing import Callable, Hashable, Protocol

import pandas as pd
import torch
from torch import Tensor, nn

from .checkpoint import checkpoint_elapsed
from .config import F1Hyper, Schedule, check_variants
from .files import replace_atomically
from .fingerprint import library_fingerprint, tensor_digest
from .progress import progress_bar
from .regularizer import F1Regularizer
from .stats import format_ci, mean_ci
from .tensor_data import TensorData
from .training import NonFiniteError, train_runs

METHODS = ("baseline", "paper", "stable")
# seconds between checkpoints of a batch in progress: writing one every outer loop would cost
# about as long as a GPU's 600 steps; a stop by signal still writes one at the step it lands
CHECKPOINT_INTERVAL_S = 60.0


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
    variants = check_variants(variants)
    methods = [("baseline", 0.0, 1.0)]
    if successor_baseline:
        methods.append(("baseline", 0.0, 0.1))
    methods += [(v, float(b), 1.0) for v in variants for b in betas]
    return [Run(m, b, s, scale) for s in range(seeds) for m, b, scale in methods]


def batch_key(run: Run) -> tuple:
    """Runs with equal keys can train together (f1lib.training.train_runs): the
    same regularizer variant and learning rate; seeds and betas may differ."""
    return (run.variant, run.lr_scale)


def run_tag(run: Run) -> dict:
    """The columns that name a run in its history rows."""
    return {"run": run.label, **asdict(run), "variant": run.variant}


def tagged_rows(tag: dict, result: list[dict] | NonFiniteError, wall_s: float) -> list[dict]:
    """A run's history rows with `tag`'s columns, its status and its wall time.

    A run that turned NaN or infinite (its result is the NonFiniteError of
    f1lib.train) keeps its rows up to then, marked diverged.
    """
    if isinstance(result, NonFiniteError):
        history, status = result.history, f"diverged at outer loop {result.outer}"
    else:
        history, status = result, "finished"
    tag = {**tag, "status": status, "wall_s": round(wall_s, 2)}
    if not history:
        return [{**tag, "outer": 0}]
    return [{**tag, **row} for row in history]


def train_together(runs: list[Run], make_model: Callable[[], nn.Module], data: TensorData,
                   schedule: Schedule, evaluation: Callable[[F1Regularizer], Callable],
                   checkpoint: Path | None = None,
                   **options) -> tuple[list[list[dict]], list[nn.Module]]:
    """Train runs together: (each run's tagged rows, its model).

    Stacked (train_runs' default), the runs must share a batch key; side by
    side (the option stack=False), a learning rate.

    Each run's network is `make_model()` (on the data's device) after seeding
    torch with the run's seed, so every method starts from the same network
    at a seed; then its F1Regularizer (variant and beta from the run) over the
    model's F1 features. `evaluation(regularizer)` gives the run's evaluate.
    Options go to f1lib.training.train_runs; the checkpoint is written every
    CHECKPOINT_INTERVAL_S unless they say otherwise. A run's wall time is its
    share of the batch's, counting the part of a resumed batch that an earlier,
    interrupted call trained up to its checkpoint.
    """
    stacked = options.get("stack", True)
    if len({batch_key(run) if stacked else run.lr_scale for run in runs}) != 1:
        what = "variants or learning rates" if stacked else "learning rates"
        raise ValueError(f"runs of different {what} cannot train together "
                         f"{'stacked' if stacked else 'side by side'}: "
                         f"{[run.label for run in runs]}")
    device = data.inputs.device
    models, regularizers = [], []
    for run in runs:
        torch.manual_seed(run.seed)
        model = make_model()
        models.append(model)
        regularizers.append(F1Regularizer(data.positive, features=model.f1_features,
                                          variant=run.variant,
                                          hyper=F1Hyper(beta=run.beta)).to(device))
    schedule = replace(schedule, lr=schedule.lr * runs[0].lr_scale)
    earlier = checkpoint_elapsed(checkpoint) if checkpoint is not None else 0.0
    start = monotonic()
    results = train_runs(models, data, regularizers, seeds=[run.seed for run in runs],
                         schedule=schedule, evaluate=[evaluation(reg) for reg in regularizers],
                         checkpoint=checkpoint,
                         **{"checkpoint_interval": CHECKPOINT_INTERVAL_S, **options})
    wall = (earlier + monotonic() - start) / len(runs)
    return [tagged_rows(run_tag(run), result, wall)
            for run, result in zip(runs, results, strict=True)], models


class Split(Protocol):
    """A training or test set of a study: images, task targets and the F1 positives."""

    images: Tensor
    targets: Tensor
    big: Tensor


def train_split(runs: list[Run], make_model: Callable[[], nn.Module], train_set: Split,
                test_set: Split, schedule: Schedule,
                evaluation: Callable[[F1Regularizer, Split], Callable],
                checkpoint: Path | None = None, **options):
    """`train_together` on `train_set`, each run evaluated on `test_set` after every outer
    loop by `evaluation(its regularizer, test_set)`: (each run's rows, its model)."""
    data = TensorData(train_set.images, train_set.targets, train_set.big)
    return train_together(runs, make_model, data, schedule,
                          lambda reg: evaluation(reg, test_set), checkpoint, **options)


def run_split_study(runs: list[Run], train_batch: Callable[[list[Run], Path], list[list[dict]]],
                    train_set: Split, test_set: Split, schedule: Schedule, work_dir: Path,
                    setting: list, group_by: Callable[[Run], Hashable] = batch_key,
                    max_together: int | None = None) -> pd.DataFrame:
    """`run_study` of runs trained on `train_set` and evaluated on `test_set`: their
    kept files are keyed on the schedule, on both sets' values and on `setting`."""
    data = tensor_digest(*(tensor for part in (train_set, test_set)
                           for tensor in (part.images, part.targets, part.big)))
    return run_study(runs, train_batch, work_dir, [schedule.as_dict(), data, *setting],
                     group_by=group_by, max_together=max_together)


def run_study(runs: list[Run], train_batch: Callable[[list[Run], Path], list[list[dict]]],
              work_dir: Path, setting: object,
              group_by: Callable[[Run], Hashable] = batch_key,
              max_together: int | None = None) -> pd.DataFrame:
    """Every run's history rows, one per run and outer loop, in the order of `runs`.

    train_batch(runs, checkpoint) trains runs with one `group_by` key together
    (checkpointing to that file) and returns each run's tagged rows; it gets at
    most `max_together` runs at a time (None: a whole group; 1: one run), in
    the order of `runs`. `setting` (JSON-able:
    schedule, data size, ...) joins each run in the key of its files, so that
    other settings never reuse them; so does the source that trains and evaluates them
    (`library_fingerprint`), so that other code never reuses them either. Every finished
    run is kept in its own file: an interrupted study resumes where it stopped. Delete
    `work_dir` once the results are saved.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)

    def key(items: object) -> str:
        text = json.dumps([items, setting, library_fingerprint()], sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    if max_together is not None and max_together < 1:
        raise ValueError(f"max_together: at least one run at a time, or None; got {max_together}")
    done = {run: work_dir / f"{key(asdict(run))}.json" for run in runs}
    groups: dict[object, list[Run]] = {}
    for run in runs:
        groups.setdefault(group_by(run), []).append(run)
    # the runs left, in batches: a resumed study forms the same batch that it was stopped in
    size = max_together or len(runs)
    left = [[run for run in group if not done[run].exists()] for group in groups.values()]
    batches = [group[i:i + size] for group in left for i in range(0, len(group), size)]
    for pending in progress_bar(batches, desc="runs" if size == 1 else "run batches"):
        ckpt = work_dir / f"{key([asdict(run) for run in pending])}.ckpt"
        for run, rows in zip(pending, train_batch(pending, ckpt), strict=True):
            replace_atomically(done[run], lambda tmp: tmp.write_text(json.dumps(rows)))
        ckpt.unlink(missing_ok=True)
    return pd.DataFrame([row for run in runs for row in json.loads(done[run].read_text())])


def final_rows(history: pd.DataFrame) -> pd.DataFrame:
    """The last outer loop of every finished run."""
    finished = history[history["status"] == "finished"]
    last = finished.groupby(["run", "seed"])["outer"].transform("max")
    return finished[finished["outer"] == last]


def summarize(history: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Per method: how many runs finished, and each column's mean over the
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
        for column in columns:
            if final is None or column not in final:
                row[column], row[f"{column}_low"], row[f"{column}_high"] = (float("nan"),) * 3
                continue
            mean, low, high = mean_ci(final[column].to_numpy())
            row[column], row[f"{column}_low"], row[f"{column}_high"] = mean, low, high
        out.append(row)
    return pd.DataFrame(out)


def paired_differences(history: pd.DataFrame, column: str,
                       baseline: str = "baseline") -> pd.DataFrame:
    """Each method against the baseline of the same seed (same initial network and
    minibatch order): the mean difference in `column` at the final outer loop,
    with its 95% interval, over the seeds where both finished."""
    last = final_rows(history).set_index(["run", "seed"])
    if baseline not in last.index.get_level_values(0):
        return pd.DataFrame(columns=["method", "seeds", "difference", "low", "high", "verdict"])
    base = last.loc[baseline]
    out = []
    for label in history["run"].drop_duplicates():
        if label == baseline or label not in last.index.get_level_values(0):
            continue
        runs = last.loc[label]
        common = runs.index.intersection(base.index)
        mean, low, high = mean_ci((runs.loc[common, column] - base.loc[common, column]).to_numpy())
        verdict = ("one seed: no interval" if low != low else "helps" if low > 0 else
                   "hurts" if high < 0 else "no measurable difference")
        out.append({"method": label, "seeds": len(common), "difference": mean, "low": low,
                    "high": high, "verdict": verdict})
    return pd.DataFrame(out)


def interval_text(row, column: str, digits: int = 4) -> str:
    """A `summarize` row's column as "mean [low, high]"."""
    return format_ci(row[column], row[column + "_low"], row[column + "_high"], digits)


def points_text(row) -> str:
    """A `paired_differences` row as signed percentage points with their interval."""
    return format_ci(row["difference"], row["low"], row["high"], 2, 100, signed=True) + " points"
