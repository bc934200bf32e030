"""Files that a killed process never leaves half written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` to a file beside `path`, then the rename: `path` holds its earlier
    contents or the new ones, whole, whenever the writer is killed."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
