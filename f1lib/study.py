"""An experiment's runs, compared: the run matrix, resumable execution, summaries.

Every run of an experiment trains the same model with the same optimizer,
schedule, minibatch order and initial weights (all fixed by its seed); the
runs differ in the F1 term only:

  baseline  beta = 0. The network trains on the task alone (its gradients are
            bitwise those of no regularizer), while the stable variant's LP
            variables still fit the F1 head's output, so the baseline has a
            head F1 to compare too.
  paper     the seed's equations and step sizes (F1Regularizer variant "paper").
  stable    the corrected Lagrangian (variant "stable").

A run's results are history rows (one per outer loop). `run_study` keeps
every finished run and the checkpoint of the one in progress in a folder, so
an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
from tqdm import tqdm

from .stats import mean_ci
from .train import NonFiniteError

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


def tagged_history(run: Run, train: Callable[[], list[dict]]) -> list[dict]:
    """Run `train()` and tag its history rows with the run, its status and wall time.

    A run that turns NaN or infinite stops there (f1lib.train raises
    NonFiniteError): its rows up to then are kept, marked diverged.
    """
    tag = {"run": run.label, **asdict(run), "variant": run.variant}
    start = time.perf_counter()
    try:
        history, status = train(), "finished"
    except NonFiniteError as err:
        history, status = err.history, f"diverged at outer loop {err.outer}"
    tag["status"] = status
    tag["wall_s"] = round(time.perf_counter() - start, 2)
    if not history:
        return [{**tag, "outer": 0}]
    return [{**tag, **row} for row in history]


def run_study(runs: list[Run], train_one: Callable[[Run, Path], list[dict]], work_dir: Path,
              setting: object) -> pd.DataFrame:
    """Every run's history rows, one per run and outer loop.

    train_one(run, checkpoint) trains one run (checkpointing to that file) and
    returns its tagged rows. `setting` (JSON-able: schedule, data size, ...)
    joins the run in the key of its files, so that other settings never
    reuse them. Delete `work_dir` once the results are saved.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for run in tqdm(runs, desc="runs", disable=None):
        text = json.dumps([asdict(run), setting], sort_keys=True)
        key = hashlib.sha1(text.encode()).hexdigest()[:16]
        done, ckpt = work_dir / f"{key}.json", work_dir / f"{key}.ckpt"
        if done.exists():
            rows += json.loads(done.read_text())
            continue
        result = train_one(run, ckpt)
        tmp = done.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        tmp.replace(done)
        ckpt.unlink(missing_ok=True)
        rows += result
    return pd.DataFrame(rows)


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
