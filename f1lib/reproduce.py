"""Re-run every notebook of the book in place, then the claims ledger (`make reproduce`).

    python -m f1lib.reproduce --profile paper
    python -m f1lib.reproduce --profile paper --set cuda_graph=False

Each notebook runs under papermill with the profile passed as $F1LIB_PROFILE,
so no injected cell overrides nbval's smoke profile later. `--set` passes a
parameter to the notebooks whose parameters cell declares it (its value is a
Python literal). Notebooks save their own figures and provenance (with their
wall time); this prints each one's time as it goes.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from pathlib import Path

from .profiles import PROFILE_NAMES


def parse_setting(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"--set wants NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise argparse.ArgumentTypeError(f"--set {name}: {value!r} is not a Python literal")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m f1lib.reproduce",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="auto", choices=("auto", *PROFILE_NAMES),
                        help="auto: $F1LIB_PROFILE as set, else paper on CUDA, quick on CPU")
    parser.add_argument("--book", type=Path, default=None,
                        help="the book folder (default: the repository's book/); the README "
                             "and figures/ beside it get the claims table")
    parser.add_argument("--set", dest="settings", type=parse_setting, action="append",
                        default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)

    import papermill

    from .ledger import update_readme
    from .provenance import repo_root

    book = args.book or (repo_root() or Path.cwd()) / "book"
    root = book.resolve().parent
    notebooks = sorted(book.glob("*.ipynb"))
    if not notebooks:
        parser.error(f"no notebooks in {book}")
    if args.profile != "auto":
        os.environ["F1LIB_PROFILE"] = args.profile
    start = time.perf_counter()
    for notebook in notebooks:
        declared = papermill.inspect_notebook(str(notebook))
        parameters = {k: v for k, v in args.settings if k in declared}
        print(f"== {notebook.name} (profile {args.profile}"
              + "".join(f", {k}={v!r}" for k, v in parameters.items()) + ")", flush=True)
        began = time.perf_counter()
        papermill.execute_notebook(str(notebook), str(notebook), parameters=parameters or None,
                                   cwd=str(book), kernel_name="python3", progress_bar=False)
        print(f"   {time.perf_counter() - began:.0f} s", flush=True)
    readme = root / "README.md"
    changed = update_readme(readme, root / "figures")
    print(f"{readme}: claims table {'updated' if changed else 'unchanged'}; "
          f"{len(notebooks)} notebooks in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
