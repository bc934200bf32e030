"""What a study's kept run is keyed on besides its settings: the source that trained it
and the data it saw.

`f1lib.study.run_study` keeps every finished run in a file named by a hash of the run,
its setting, `library_fingerprint()` and the data's `tensor_digest`, so that a figure
never mixes runs of two versions of the method, or of two datasets.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

import torch

PACKAGE = Path(__file__).parent

# The modules whose runs run_study keeps. They, and every f1lib module that they import,
# directly or not, decide what a kept run holds; the rest of the package (plots, the ledger,
# provenance, reproduce, profiles, lp_study) only presents results, and may change without
# the kept runs being trained again. A new caller of run_study belongs here (a test checks).
STUDY_MODULES = ("mnist_study", "sky_study")


def _module_file(package: Path, dotted: str) -> Path | None:
    base = package.joinpath(*dotted.split(".")) if dotted else package
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def study_sources(package: Path = PACKAGE, roots: tuple[str, ...] = STUDY_MODULES) -> list[Path]:
    """The source files of `roots` and of every package module they import, directly or
    not (relative imports, read from the source without running it), with the __init__
    of each package on the way, which Python runs on import."""
    seen: dict[str, Path] = {}
    todo = ["", *roots]  # "": the package's own __init__, run by any import of it
    while todo:
        dotted = todo.pop()
        path = _module_file(package, dotted)
        if dotted in seen or path is None:
            continue
        seen[dotted] = path
        parts = dotted.split(".") if dotted else []
        here = parts if path.name == "__init__.py" else parts[:-1]  # the module's package
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom) or node.level == 0:
                continue
            anchor = here[:len(here) - (node.level - 1)]
            target = anchor + (node.module.split(".") if node.module else [])
            todo.append(".".join(target))
            todo += [".".join(target + [alias.name]) for alias in node.names]  # submodules
    return sorted(seen.values())


@functools.cache
def library_fingerprint(package: Path = PACKAGE) -> str:
    """A hash of the source that decides what a study's run holds (`study_sources`: each
    file's path and bytes), in the key of every run that run_study keeps."""
    digest = hashlib.sha1()
    for path in study_sources(package):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def tensor_digest(*tensors: torch.Tensor, chunk_bytes: int = 1 << 26) -> str:
    """A hash of the tensors' dtypes, shapes and values, on any device, for the keys of
    run_study: the data a run trained and was evaluated on belongs in its key. It reads
    each tensor once, `chunk_bytes` at a time."""
    digest = hashlib.sha1()
    for tensor in tensors:
        digest.update(f"{tensor.dtype} {tuple(tensor.shape)}\0".encode())
        flat = tensor.detach().contiguous().view(-1)
        step = max(1, chunk_bytes // max(1, flat.element_size()))
        for start in range(0, flat.numel(), step):
            part = flat[start:start + step].cpu()
            digest.update(part.view(torch.uint8).numpy())
    return digest.hexdigest()[:16]
