"""Datasets: each returns tensors with the example's dataset index as its row."""

from __future__ import annotations

import os
from pathlib import Path


def default_root() -> Path:
    """Where datasets are looked for: $F1LIB_DATA if set, else ~/.cache/f1lib."""
    return Path(os.environ.get("F1LIB_DATA") or Path.home() / ".cache" / "f1lib")
