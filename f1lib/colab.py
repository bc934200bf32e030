"""Each notebook's first code cell: in Colab, install f1lib from the book's repository.

The cell is written from one setting, `repository.url` in the book's _config.yml, and the
book's version (`f1lib.__version__`, whose git tag is `v<version>`):

    python -m f1lib.colab             # rewrite every notebook's cell from the setting
    python -m f1lib.colab --check     # exit 1 if a notebook's cell is not what it would write

Inside Colab (`google.colab` importable) the cell pip-installs f1lib with the extras the
notebooks need; anywhere else it does nothing, as f1lib comes with the book. While the
setting is empty the cell, in Colab, stops with what to do instead.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from . import __version__

TAG = "colab-install"  # the cell's tag, by which it is found and rewritten
EXTRAS = "data,notebook"  # what the notebooks import beyond Colab's own packages


def install_requirement(url: str, ref: str) -> str:
    """pip's requirement for f1lib at `ref` of the git repository at `url`."""
    return f"f1lib[{EXTRAS}] @ git+{url.rstrip('/')}@{ref}"


def cell_source(url: str, version: str = __version__, ref: str | None = None) -> str:
    """The install cell for the repository at `url` ("" while the book has no public
    address) and the book's `version` (installed from the git tag v<version> unless `ref`
    names another)."""
    head = ("# In Colab: install f1lib, at this book's version, from its repository. "
            "Elsewhere f1lib\n# comes with the book, and this cell does nothing.\n"
            "import importlib.util, subprocess, sys\n\n"
            "IN_COLAB = importlib.util.find_spec(\"google\") is not None and \\\n"
            "    importlib.util.find_spec(\"google.colab\") is not None\n")
    if not url:
        return head + (
            "if IN_COLAB and importlib.util.find_spec(\"f1lib\") is None:\n"
            "    raise RuntimeError(\"no public address for this book yet: upload f1lib/ "
            "beside the notebook\")")
    requirement = install_requirement(url, ref or f"v{version}")
    return head + (
        f"if IN_COLAB:\n"
        f"    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"--quiet\",\n"
        f"                    {requirement!r}], check=True)")


def repository_url(config: Path) -> str:
    """`repository.url` of a Jupyter Book _config.yml ("" when unset)."""
    import yaml  # the book extra's

    return (yaml.safe_load(config.read_text()).get("repository") or {}).get("url") or ""


def _lines(text: str) -> list[str]:
    parts = text.split("\n")
    return [line + "\n" for line in parts[:-1]] + [parts[-1]]


def write_cells(book: Path, source: str, check: bool = False) -> list[Path]:
    """Put `source` as the first code cell (tagged TAG) of every notebook in `book`; the
    notebooks whose cell differed (with `check`, only listed, nothing written)."""
    changed = []
    for path in sorted(book.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        cells = nb["cells"]
        tagged = [c for c in cells if TAG in c.get("metadata", {}).get("tags", [])]
        if tagged and "".join(tagged[0]["source"]) == source:
            continue
        changed.append(path)
        if check:
            continue
        if tagged:
            tagged[0]["source"] = _lines(source)
        else:
            first = next(i for i, c in enumerate(cells) if c["cell_type"] == "code")
            cell = {"cell_type": "code", "execution_count": None, "id": f"{TAG}-cell",
                    "metadata": {"tags": [TAG]}, "outputs": [], "source": _lines(source)}
            cells.insert(first, cell)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return changed


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(prog="python -m f1lib.colab", description=__doc__)
    parser.add_argument("--book", type=Path, default=root / "book")
    parser.add_argument("--url", help="the repository's address (default: repository.url of "
                                      "the _config.yml above the book)")
    parser.add_argument("--ref", help="the git ref to install (default: v<version>)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a "
                                                             "notebook's cell differs")
    args = parser.parse_args(argv)
    url = args.url if args.url is not None else repository_url(args.book.parent / "_config.yml")
    if url and not re.match(r"^(https://|file://)", url):
        parser.error(f"--url wants an https:// or file:// address, got {url!r}")
    changed = write_cells(args.book, cell_source(url, ref=args.ref), check=args.check)
    for path in changed:
        print(f"{path.name}: {'differs' if args.check else 'written'}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())


# A Colab GPU's pace, assumed, for the estimates below: a quarter of a T4's float32 peak
# (8.1 TFLOP/s; Colab's free GPU has no bfloat16 tensor cores), and per step the eager inner
# step's launch-bound floor that an H100 measured (benchmarks/RESULTS.md, inner_step.py)
ASSUMED_FLOPS_PER_S = 8.1e12 / 4
ASSUMED_STEP_FLOOR_S = 3e-3


def training_flops(notebook: str, config: dict) -> tuple[float, int] | None:
    """(FLOPs of one training step, steps over all runs) of a chapter under `config`,
    counted on the meta device (nothing is computed); None for the chapters whose work
    is the CPU's (the LP's tiny runs, painting scenes)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .models import SegNet, SharedHeadMLP
    from .study import run_matrix

    if notebook == "mnist":
        runs = run_matrix(config["variants"], config["betas"], config["seeds"],
                          config["successor_baseline"])
        with torch.device("meta"):
            model, inputs = SharedHeadMLP(in_features=64 * 64), torch.rand(
                config["batch_size"], 64 * 64)
            targets = torch.randint(0, 10, (config["batch_size"],))
    elif notebook == "sky_segmentation":
        runs = run_matrix(config["variants"], config["betas"], config["seeds"])
        with torch.device("meta"):
            model = SegNet(width=config["width"])
            inputs = torch.rand(config["batch_size"], 3, *config["size"])
            targets = torch.randint(0, 2, (config["batch_size"], *config["size"]))
    else:
        return None
    with FlopCounterMode(display=False) as counter:
        output, head = model(inputs)
        (torch.nn.functional.cross_entropy(output, targets) + head.sum()).backward()
    return counter.get_total_flops(), len(runs) * config["outer"] * config["inner"]


def colab_estimates() -> list[list[str]]:
    """Per chapter, what `auto` (quick) trains in Colab and an estimate of its time there."""
    from .profiles import COLAB, PROFILES, profile_config

    rows = []
    for notebook in PROFILES:
        config = {**profile_config(notebook, "quick")[1], **COLAB.get(notebook, {})}
        counted = training_flops(notebook, config)
        if counted is None:
            rows.append([notebook, "CPU work (no training on the GPU)", "as on any 2-core CPU"])
            continue
        flops, steps = counted
        seconds = flops * steps / ASSUMED_FLOPS_PER_S + steps * ASSUMED_STEP_FLOOR_S
        rows.append([notebook, f"{steps:,} steps of {flops / 1e9:,.2f} GFLOP",
                     f"about {seconds:.0f} s of training (an estimate)"])
    return rows
