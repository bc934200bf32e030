"""Where figures go, and the provenance record written beside each one.

`figures/<name>.json` says which notebook and parameters made the figure,
the git commit, the device, the library versions, the wall time and the
date, and holds the figure's headline results (the numbers that the book
quotes and the README's table is made from).
"""

from __future__ import annotations

import atexit
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from .files import replace_atomically

PACKAGES = ("f1lib", "torch", "numpy", "scipy", "pandas", "matplotlib", "seaborn",
            "torchvision", "torchmetrics", "papermill")


def repo_root(start: Path | None = None) -> Path | None:
    """The checkout that holds the book, found from `start` (default: the cwd) upward."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").is_file() and (folder / "f1lib").is_dir() \
                and (folder / "book").is_dir():
            return folder
    return None


def figures_dir(profile: str, cwd: Path | None = None) -> Path:
    """The folder a notebook, run in `cwd` (default: the cwd), writes its figures to.

    $F1LIB_FIGURES if set; under the smoke profile a temporary folder, so
    that tests never overwrite the committed figures; else figures/ at the
    repository root, or ./figures when run outside a checkout (Colab).
    """
    if os.environ.get("F1LIB_FIGURES"):
        folder = Path(os.environ["F1LIB_FIGURES"])
    elif profile == "smoke":
        folder = Path(tempfile.gettempdir()) / "f1lib-smoke-figures"
    else:
        root = repo_root(cwd)
        folder = (root if root is not None else cwd or Path.cwd()) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def scratch_dir(name: str, profile: str) -> Path:
    """A folder for a notebook's checkpoints and finished runs, so that an
    interrupted run resumes: .cache/<name>-<profile> at the repository root
    (./.cache outside a checkout); under smoke, a temporary folder, removed when the
    process ends, whether the notebook finished or failed (nothing resumes a smoke run)."""
    if profile == "smoke":
        folder = Path(tempfile.mkdtemp(prefix=f"f1lib-{name}-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    else:
        root = repo_root()
        folder = (root if root is not None else Path.cwd()) / ".cache" / f"{name}-{profile}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_git(*args: str, cwd: Path) -> str | None:
    """git's output (stripped) for `args` run in `cwd`, or None where git is missing, fails
    or takes over 10 s."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_state() -> dict:
    """The commit that the outputs come from, and whether f1lib's files differ from it.

    $F1LIB_GIT_COMMIT, when set, names that commit: a copy of a checkout run elsewhere
    (on a machine it was copied to) may have no .git, or one whose HEAD is another
    commit. f1lib is then compared with the commit named where this repository has it,
    and is unknown (None) where it does not.
    """
    root = repo_root()
    named = os.environ.get("F1LIB_GIT_COMMIT")
    if named:
        modified = None
        known = root is not None and run_git("cat-file", "-e", f"{named}^{{commit}}",
                                              cwd=root) is not None
        if known:
            changed = run_git("diff", "--name-only", named, "--", "f1lib", cwd=root)
            untracked = run_git("ls-files", "--others", "--exclude-standard", "--", "f1lib",
                                cwd=root)
            if changed is not None and untracked is not None:
                modified = bool(changed or untracked)
        return {"commit": named, "library_modified": modified, "commit_from": "F1LIB_GIT_COMMIT"}
    commit = run_git("rev-parse", "HEAD", cwd=root) if root is not None else None
    if commit is None:
        return {"commit": None, "library_modified": None}
    # the notebooks and figures change while the book is reproduced; what
    # matters for the numbers is whether the library differed from the commit
    status = run_git("status", "--porcelain", "--", "f1lib", cwd=root)
    return {"commit": commit, "library_modified": None if status is None else bool(status)}


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name, from Linux's /proc/cpuinfo (`cpuinfo`: its text), else what
    platform knows. Two machines of one name can carry different CPUs, whose vector units
    round an unsettled run differently (the lp_bound chapter's `paper` variant)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def device_info(computed_on: str | None = None) -> dict:
    """The machine, and `computed_on`: the torch device type that the notebook computed on
    (default: CUDA where there is one). The GPU's name is kept either way: it names the
    machine."""
    if computed_on is None:
        computed_on = "cuda" if torch.cuda.is_available() else "cpu"
    info = {"torch_device": torch.device(computed_on).type,
            "cpu": cpu_model(),
            # the vector instructions torch's CPU kernels use (AVX2, AVX512, ...)
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_count": os.cpu_count(), "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _jsonable(value: Any) -> Any:
    """Plain JSON: numpy scalars to Python, non-finite floats to null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Provenance:
    """Started in a notebook's first cells; `save` writes a figure and its record."""

    def __init__(self, notebook: str, profile: str, parameters: dict,
                 device: str | None = None):
        """`device`: what the notebook computes on, where not CUDA whenever there is one
        (the CPU chapters: "cpu")."""
        self.notebook = notebook
        self.profile = profile
        self.parameters = dict(parameters)
        self.device = None if device is None else torch.device(device).type
        self.started = time.perf_counter()
        self.folder = figures_dir(profile)
        self.resumed = False

    def scratch(self) -> Path:
        """The notebook's folder for checkpoints and finished runs (`scratch_dir`).
        If it holds an earlier, interrupted execution's work, this execution
        resumes it, and its records say so."""
        folder = scratch_dir(Path(self.notebook).stem, self.profile)
        self.resumed = self.resumed or any(folder.iterdir())
        return folder

    def save(self, name: str, figure=None, tables: dict | None = None,
             results: dict | None = None, training_s: float | None = None) -> Path:
        """Write <name>.png/.pdf (figure), <name>[_key].csv (tables) and <name>.json.

        `tables` maps a suffix ("" for the main table) to a pandas DataFrame;
        `results` holds the headline numbers. `training_s`, the seconds spent
        training the figure's runs, counts what an interrupted execution of the
        notebook trained before this one resumed it (`scratch`), where the
        notebook's wall time counts this execution only. Returns the JSON's path.
        """
        written = []
        if figure is not None:
            for ext in ("png", "pdf"):
                path = self.folder / f"{name}.{ext}"
                # no creation date in the PDF, so that an unchanged figure is unchanged bytes
                figure.savefig(path, dpi=150, bbox_inches="tight",
                               metadata={"CreationDate": None} if ext == "pdf" else None)
                written.append(path.name)
        for key, table in (tables or {}).items():
            path = self.folder / (f"{name}_{key}.csv" if key else f"{name}.csv")
            table.to_csv(path, index=False, float_format="%.6g")
            written.append(path.name)
        record = {
            "figure": name,
            "notebook": self.notebook,
            "profile": self.profile,
            "parameters": self.parameters,
            "git": git_state(),
            "device": device_info(self.device),
            "versions": versions(),
            "wall_time_s": round(time.perf_counter() - self.started, 1),
            **({} if training_s is None else {"training_s": round(float(training_s), 1)}),
            "resumed": self.resumed,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": written,
            "results": results or {},
        }
        path = self.folder / f"{name}.json"
        # whole or not at all: a record cut short by a kill would stop every later reader
        # (the ledger, python -m f1lib.reproduce); the earlier record stays until then
        text = json.dumps(_jsonable(record), indent=2) + "\n"
        replace_atomically(path, lambda partial: partial.write_text(text))
        _show_markdown(provenance_markdown(record))
        return path


def records(figures: Path) -> list[tuple[Path, dict]]:
    """Every provenance record under `figures`, with its path, in file-name order: the
    *.json files that hold a record (other JSON is left alone). A file that is not JSON
    at all raises a ValueError that names it: skipped, its claims would silently leave
    the ledger."""
    found = []
    for path in sorted(Path(figures).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not JSON ({error}): write it again by running its "
                             "notebook, or remove it") from None
        if isinstance(record, dict) and "notebook" in record:
            found.append((path, record))
    return found


def notebook_outputs(figures: Path, notebook: str) -> list[Path]:
    """Every file under `figures` that `notebook` (e.g. "mnist.ipynb") wrote: its
    provenance records and the files each one lists."""
    return [file for path, record in records(figures) if record["notebook"] == notebook
            for file in (path, *(path.parent / name for name in record["files"]))]


def hardware_text(device: dict) -> str:
    """What a record's `device` computed on, in words: the GPU, or the CPU (and the GPU of
    its machine, where the notebook kept to the CPU beside one)."""
    cpu = f"CPU ({device.get('cpu_count')} cores)"
    if not device.get("gpu"):
        return cpu
    if device.get("torch_device") == "cuda":
        return device["gpu"]
    return f"the {cpu} of a machine with an {device['gpu']}"


def commit_text(git: dict) -> str:
    """A record's commit, short, and whether f1lib had uncommitted changes then."""
    commit = (git.get("commit") or "unknown")[:7]
    return commit + (" with uncommitted changes to f1lib" if git.get("library_modified") else "")


def notebook_costs(figures: Path) -> list[dict]:
    """Per notebook with records under `figures`, in name order, what its last execution
    ran on and took: its last figure's record (the one written at the longest notebook
    time) and the training time that a record of that execution gives."""
    executions: dict[str, list[dict]] = {}
    for _, record in records(figures):
        executions.setdefault(record["notebook"], []).append(record)
    costs = []
    for notebook, found in sorted(executions.items()):
        last = max(found, key=lambda record: record["wall_time_s"])
        training = [r["training_s"] for r in found if r.get("training_s") is not None]
        costs.append({"notebook": notebook, "profile": last["profile"],
                      "hardware": hardware_text(last["device"]),
                      "wall_time_s": last["wall_time_s"],
                      "training_s": max(training) if training else None,
                      "resumed": bool(last.get("resumed")),
                      "commit": commit_text(last["git"]),
                      "date": last["date"][:10]})
    return costs


def provenance_markdown(record: dict) -> str:
    """The provenance note printed under a figure, from its JSON record."""
    device, lib = record["device"], record["versions"]
    commit = commit_text(record["git"])
    hardware = hardware_text(device)
    libraries = ", ".join(f"{k} {v}" for k, v in lib.items())
    parameters = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in record["parameters"].items())
    took = f"in {record['wall_time_s']:g} s of notebook time"
    training = record.get("training_s")
    if record.get("resumed"):
        took += ", resuming an interrupted execution"
        if training is not None:
            took += f": training its runs took {training:g} s in all"
    elif training is not None:
        took += f", {training:g} s of it training the runs"
    return (
        f"**Provenance of `{record['figure']}`.** Made by `{record['notebook']}` under the "
        f"`{record['profile']}` profile on {hardware}, at commit `{commit}`, on "
        f"{record['date']}, {took}. "
        f"Parameters: {parameters}. Libraries: {libraries}. "
        f"Data and record: `figures/{record['figure']}.*`."
    )


def _show_markdown(text: str) -> None:
    """Display Markdown in a running notebook; elsewhere do nothing."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        return
    if get_ipython() is not None:
        display(Markdown(text))
