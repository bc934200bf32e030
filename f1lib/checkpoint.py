"""Where Algorithm 1 stands, written to a file and read back: a stopped run resumes exactly.

A checkpoint holds every run's module and optimizer state, the histories so far, the
outer loop and inner step reached, the loss sums of the outer loop in progress, the CPU's
random state and the seconds spent training. `f1lib.training.train_runs` writes one after
outer loops, and at the step where a SIGINT or SIGTERM stops it.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from .files import replace_atomically


@dataclass
class Position:
    """How far training has come: `outer` whole outer loops, then `inner` steps of the
    next, whose loss sums so far are `totals` (None at an outer loop's start)."""

    histories: list[list[dict]]
    outer: int = 0
    inner: int = 0
    totals: Tensor | None = None
    failed: dict[int, tuple[str, int]] = field(default_factory=dict)  # run: (message, outer)
    elapsed_s: float = 0.0


def read_checkpoint(path: str | os.PathLike, map_location, mmap: bool = False) -> dict:
    """The state saved at `path`, loaded with `weights_only=True`: tensors, numbers, strings
    and containers of them, never code. Anything else in the file (a pickled object that
    f1lib never writes) is refused with a ValueError naming the file."""
    try:
        # str: torch 2.2's mmap takes a file name only
        state = torch.load(str(path), map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"checkpoint {path} holds more than tensors, numbers and strings, so it was not "
            f"written by f1lib and is not loaded (torch.load refused it: "
            f"{str(error).splitlines()[0]}); delete it to start the run over") from None
    except (EOFError, OSError, RuntimeError) as error:  # truncated, empty, a folder, not torch's
        raise ValueError(
            f"checkpoint {path} cannot be read ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no data'}): it is damaged or "
            "not a checkpoint; delete it to start the run over") from None
    if not isinstance(state, dict) or "runs" not in state:
        raise ValueError(f"checkpoint {path} is not one that f1lib wrote; delete it to start "
                         "the run over")
    return state


def checkpoint_elapsed(path: str | os.PathLike) -> float:
    """Seconds of training that the checkpoint at `path` holds, over every call
    that trained it (0 when there is no file): the time an interrupted run had
    spent up to its last write, which the resumed run does not repeat."""
    path = Path(path)
    if not path.exists():
        return 0.0
    # mmap: the weights stay on disk, only the small entries are read
    state = read_checkpoint(path, "cpu", mmap=True)
    return float(state.get("elapsed_s", 0.0))


def save_checkpoint(path: Path, run_ids: list[dict], runs: Sequence[nn.Module],
                    optimizers: Sequence[torch.optim.Optimizer], position: Position) -> None:
    """Write `position` and the runs' state to `path`, whole or not at all."""
    state = {
        "runs": run_ids, "outer": position.outer, "inner": position.inner,
        "histories": position.histories, "totals": position.totals,
        "failed": position.failed,
        "runs_state": [run.state_dict() for run in runs],
        "optimizers": [opt.state_dict() for opt in optimizers],
        "rng": torch.get_rng_state(),
        "elapsed_s": position.elapsed_s,
    }
    replace_atomically(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path, run_ids: list[dict], runs: Sequence[nn.Module],
                    optimizers: Sequence[torch.optim.Optimizer], device) -> Position:
    """Load the runs' and optimizers' state from `path` and set the CPU's random state;
    return where training stood. Refuses a checkpoint of other runs, or of the same runs
    trained the other way (stacked or side by side)."""
    state = read_checkpoint(path, device)
    if state["runs"] != run_ids:
        saved = state["runs"]
        differs = sorted({key for old, new in zip(saved, run_ids) for key in {*old, *new}
                          if old.get(key) != new.get(key)}) if len(saved) == len(run_ids) \
            else [f"the number of runs ({len(saved)} saved, {len(run_ids)} now)"]
        raise ValueError(f"checkpoint {path} belongs to another run: its {', '.join(differs)} "
                         "differ from this one's; delete it, or point checkpoint= elsewhere")
    # the first format held a single optimizer's state, as "optimizer"
    saved_optimizers = state.get("optimizers") or [state["optimizer"]]
    if len(saved_optimizers) != len(optimizers):
        trained = "stacked" if len(saved_optimizers) == 1 else "side by side"
        raise ValueError(f"checkpoint {path} holds runs trained {trained}; these are not")
    for run, saved in zip(runs, state["runs_state"], strict=True):
        run.load_state_dict(saved)
    for optimizer, saved in zip(optimizers, saved_optimizers, strict=True):
        optimizer.load_state_dict(saved)
    torch.set_rng_state(state["rng"].cpu())  # map_location moved it with the rest
    return Position(state["histories"], state["outer"], state.get("inner", 0),
                    state.get("totals"), dict(state["failed"]), state.get("elapsed_s", 0.0))
