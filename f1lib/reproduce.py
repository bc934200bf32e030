"""Re-run every notebook of the book in place, then the claims ledger (`make reproduce`).

    python -m f1lib.reproduce --profile paper
    python -m f1lib.reproduce --profile paper --set cuda_graph=False
    python -m f1lib.reproduce --profile paper --only mnist sky_segmentation

Each notebook runs under papermill with the profile passed as $F1LIB_PROFILE,
so no injected cell overrides nbval's smoke profile later. `--set` passes a
parameter to the notebooks whose parameters cell declares it (its value is a
Python literal); a name that no notebook to run declares is refused.
`--only` names the notebooks to run (their file stems); the others keep their
stored outputs. `--jobs N` runs N notebooks at once: on a
GPU machine the CPU-bound ones (lp_bound, sky_histogram) then run beside the
GPU-bound ones, and on a CUDA machine each gets an equal share of the cores as
its CPU threads ($OMP_NUM_THREADS, unless it is set). SIGTERM stops the notebooks still
running, as Ctrl-C does: each kernel is interrupted, as Jupyter's interrupt
button does, so that a study in training writes its checkpoint at the step it
stops (f1lib.signals.HeldSignals), and what has not ended `--grace` seconds
later is killed.
Notebooks save their own figures and provenance (with their wall time, which
sharing the machine lengthens); each one's log goes to .cache/reproduce/, and
every minute a line says how far each running notebook is (papermill's count of
cells done, read from that log).
A notebook executes into .cache/reproduce/ and replaces the book's only when it
ends well: one that fails or is stopped leaves the book its notebook and its
figures as they were, and its partial notebook, and the figures it wrote, stay
in .cache/reproduce/ to be looked at.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .profiles import PROFILE_NAMES, resolve_profile
from .progress import ENV as PROGRESS_ENV
from .provenance import figures_dir, notebook_outputs, repo_root


def parse_setting(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"--set wants NAME=VALUE, got {text!r}")
    if name == "profile":  # the notebooks' figures would land where --profile's go
        raise argparse.ArgumentTypeError("--set profile=...: choose the profile with "
                                         "--profile (or $F1LIB_PROFILE), not --set")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise argparse.ArgumentTypeError(
            f"--set {name}: {value!r} is not a Python literal") from None


class Staged:
    """One execution of a book's `notebook`, written to `folder` (`.output`), that
    becomes the book's only through `keep`. `discard` instead puts back the figures
    that the notebook had written into `figures` before, as they were, and moves
    what this execution wrote there to `folder`/<stem>.figures/."""

    def __init__(self, notebook: Path, folder: Path, figures: Path):
        self.notebook, self.figures = notebook, figures
        self.output = folder / notebook.name
        self.aside = folder / f"{notebook.stem}.figures"
        shutil.rmtree(self.aside, ignore_errors=True)  # an earlier execution's, now stale
        self.before = {path: path.read_bytes()
                       for path in notebook_outputs(figures, notebook.name) if path.exists()}

    def keep(self) -> None:
        shutil.move(self.output, self.notebook)

    def discard(self) -> None:
        for path in notebook_outputs(self.figures, self.notebook.name):
            if path.exists() and self.before.get(path) != path.read_bytes():
                self.aside.mkdir(parents=True, exist_ok=True)
                shutil.move(path, self.aside / path.name)
        for path, data in self.before.items():
            if not path.exists():
                path.write_bytes(data)


THREADS_ENV = "OMP_NUM_THREADS"  # torch's intra-op threads, and OpenBLAS's, at start-up


def usable_cores() -> int:
    """The cores this process may run on (its affinity, where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def kernel_threads(at_once: int, cores: int) -> int:
    """CPU threads for each of `at_once` notebooks that run together on `cores` cores: an
    equal share. Left alone, each kernel's torch starts one thread per core, and threads
    that outnumber the cores wait on each other (benchmarks/cpu_share.py)."""
    return max(1, cores // at_once)


def shares_threads() -> bool:
    """Whether notebooks run at once get `kernel_threads`: on a CUDA machine, where their
    CPU work is set-up (painting scenes, reading digits) and the GPU trains. On a CPU-only
    machine the notebooks train on the CPU, and a share fixed at launch would keep a long
    notebook at its share after the short ones end, which measured slower
    (benchmarks/RESULTS.md)."""
    import torch

    return torch.cuda.is_available()


STATUS_INTERVAL_S = 60.0  # how often a line says how far the running notebooks are


def cells_done(log: Path) -> str:
    """How far papermill is, from its progress bar in `log` ("Executing: 35%| | 7/20 [")."""
    try:
        with open(log, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - 4096))
            tail = file.read().decode(errors="replace")
    except OSError:
        return "starting"
    found = re.findall(r"\| *(\d+)/(\d+) \[", tail)
    return f"{found[-1][0]} of {found[-1][1]} cells done" if found else "starting"


def ignore_stops() -> None:
    """In a child before it starts: SIGINT and SIGTERM ignored (a disposition it keeps), and,
    on Linux, SIGKILL when its parent dies, so that a `kill -9` of this process alone does
    not leave papermill running on to write a notebook that nothing will promote."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def stop_notebooks(processes: list[subprocess.Popen], grace: float) -> None:
    """Interrupt the kernels of the papermill `processes` (SIGINT, as Jupyter's interrupt
    button does), wait up to `grace` seconds for the processes to end, then kill those
    left (they ignore SIGTERM). A kernel that papermill leaves behind exits by itself
    (ipykernel's parent poller), but without a word to the code it runs: hence the
    interrupt first."""
    import psutil  # the book extra's; main imports it before any notebook starts

    for process in processes:
        try:
            kernels = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:  # it ended meanwhile
            continue
        for kernel in kernels:
            try:
                kernel.send_signal(signal.SIGINT)
            except psutil.NoSuchProcess:
                pass
    deadline = time.monotonic() + grace
    try:
        for process in processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
    except BaseException:  # a second Ctrl-C or SIGTERM: no more waiting
        for process in processes:
            process.kill()
        raise
    finally:
        for process in processes:
            process.wait()


def what_was_kept(staged: Staged) -> str:
    """After a notebook failed or was stopped: that the book kept its copy and figures,
    and where the partial execution and the figures it wrote went."""
    moved = f", the figures it wrote in {staged.aside}" if staged.aside.exists() else ""
    return (f"the book keeps its {staged.notebook.name} and figures; the partial notebook is "
            f"{staged.output}{moved}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m f1lib.reproduce",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="auto", choices=("auto", *PROFILE_NAMES),
                        help="auto: $F1LIB_PROFILE as set, else paper on CUDA, quick on CPU")
    parser.add_argument("--book", type=Path, default=None,
                        help="the book folder (default: the repository's book/); the README "
                             "beside it and its intro.md get tables of the figures/ beside it")
    parser.add_argument("--set", dest="settings", type=parse_setting, action="append",
                        default=[], metavar="NAME=VALUE",
                        help="a parameter (a Python literal) for the notebooks that declare "
                             "it, over the profile's value; repeatable")
    parser.add_argument("--jobs", type=int, default=1,
                        help="notebooks run at once (a GPU machine: the CPU-bound notebooks "
                             "run beside the GPU-bound ones)")
    parser.add_argument("--only", nargs="+", default=None, metavar="NOTEBOOK",
                        help="run only these notebooks (file stems, e.g. mnist)")
    parser.add_argument("--grace", type=float, default=20.0, metavar="SECONDS",
                        help="on SIGTERM or Ctrl-C, how long the interrupted notebooks may "
                             "take to write their checkpoints before they are killed")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if not args.grace >= 0:
        parser.error(f"--grace is in seconds, at least 0: got {args.grace}")

    import papermill
    import psutil  # noqa: F401  stop_notebooks': missing, it would fail only at a stop

    from .ledger import update_tables

    book = args.book or (repo_root() or Path.cwd()) / "book"
    root = book.resolve().parent
    try:  # "auto" reads $F1LIB_PROFILE, which the notebooks would refuse as well
        profile = resolve_profile(args.profile)
    except ValueError as error:
        parser.error(f"$F1LIB_PROFILE: {error}")
    # where the notebooks, run in the book's folder, write their figures
    figures = figures_dir(profile, cwd=book)
    notebooks = sorted(book.glob("*.ipynb"))
    if not notebooks:
        parser.error(f"no notebooks in {book}")
    if args.only is not None:
        unknown = sorted(set(args.only) - {nb.stem for nb in notebooks})
        if unknown:
            parser.error(f"--only: no notebook {', '.join(unknown)} in {book}; "
                         f"known: {', '.join(nb.stem for nb in notebooks)}")
        notebooks = [nb for nb in notebooks if nb.stem in args.only]
    declared = {nb: set(papermill.inspect_notebook(str(nb))) for nb in notebooks}
    # a name that no notebook to run declares is a typo, or meant for a notebook left out:
    # either way it would be dropped in silence, and the run would train, for as long as it
    # takes, with the profile's value
    known = set().union(*declared.values())
    unknown = sorted({name for name, _ in args.settings} - known)
    if unknown:
        parser.error(f"--set: no notebook to run ({', '.join(nb.stem for nb in notebooks)}) "
                     f"has a parameter {', '.join(unknown)}; their parameters: "
                     f"{', '.join(sorted(known))}")
    logs = root / ".cache" / "reproduce"
    logs.mkdir(parents=True, exist_ok=True)
    # no progress bars in the kernels: papermill would store every redraw in the book's pages
    env = {**os.environ, PROGRESS_ENV: "0"}
    if args.profile != "auto":
        env["F1LIB_PROFILE"] = args.profile
    at_once = min(args.jobs, len(notebooks))
    # a value set by hand is kept
    if at_once > 1 and THREADS_ENV not in os.environ and shares_threads():
        cores = usable_cores()
        share = kernel_threads(at_once, cores)
        env[THREADS_ENV] = str(share)
        print(f"== {at_once} notebooks at once on {cores} cores: {share} CPU "
              f"thread{'s' if share != 1 else ''} each (${THREADS_ENV}; set it to choose)",
              flush=True)

    def launch(notebook: Path) -> tuple[subprocess.Popen, float, Staged]:
        parameters = {k: v for k, v in args.settings if k in declared[notebook]}
        print(f"== {notebook.name} starts (profile {args.profile}"
              + "".join(f", {k}={v!r}" for k, v in parameters.items())
              + f"; log {logs / notebook.stem}.log)", flush=True)
        staged = Staged(notebook, logs, figures)
        command = [sys.executable, "-m", "papermill", str(notebook), str(staged.output), "--cwd",
                   str(book), "--kernel", "python3", "--log-level", "WARNING"]
        if parameters:
            command += ["-y", json.dumps(parameters)]  # JSON is YAML
        # papermill ignores SIGINT and SIGTERM, which would make it drop its kernel unheard:
        # a terminal's Ctrl-C or timeout's SIGTERM reach the whole process group, and this
        # process then stops the notebooks in order (stop_notebooks). It stays in the group,
        # so that a SIGKILL to the group (timeout -k) takes papermill, and its kernel, too
        with open(logs / f"{notebook.stem}.log", "w") as log:  # the child keeps its own handle
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    preexec_fn=ignore_stops if os.name == "posix" else None
                                    ), time.perf_counter(), staged

    start = last_status = time.perf_counter()
    waiting, running, failed = list(notebooks), {}, []
    # a SIGTERM (timeout, a job scheduler) ends the run like Ctrl-C: the finally below stops
    # the notebooks still running; their studies resume from .cache/ on the next run
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    interrupted = False
    try:
        while waiting or running:
            while waiting and len(running) < args.jobs:
                notebook = waiting.pop(0)
                running[notebook] = launch(notebook)
            time.sleep(0.5)
            if running and time.perf_counter() - last_status >= STATUS_INTERVAL_S:
                last_status = time.perf_counter()
                print("== running: " + ", ".join(
                    f"{notebook.name} ({cells_done(logs / f'{notebook.stem}.log')}, "
                    f"{(last_status - began) / 60:.0f} min)"
                    for notebook, (_, began, _) in running.items()), flush=True)
            for notebook, (process, began, staged) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[notebook]
                outcome = "done" if process.returncode == 0 else f"FAILED ({process.returncode})"
                print(f"== {notebook.name} {outcome} in {time.perf_counter() - began:.0f} s",
                      flush=True)
                if process.returncode:
                    failed.append(notebook.name)
                    staged.discard()
                    tail = (logs / f"{notebook.stem}.log").read_text().splitlines()[-30:]
                    print("\n".join("   " + line for line in tail), flush=True)
                    print(f"   {what_was_kept(staged)}", flush=True)
                else:
                    staged.keep()
    except KeyboardInterrupt:  # Ctrl-C: the shell's code for it, without a traceback
        interrupted = True
    finally:
        try:
            stop_notebooks([process for process, _, _ in running.values()], args.grace)
        finally:
            for notebook, (_, _, staged) in running.items():
                staged.discard()
                print(f"== {notebook.name} stopped unfinished; {what_was_kept(staged)}", flush=True)
            signal.signal(signal.SIGTERM, previous)
    if interrupted:
        return 128 + signal.SIGINT
    readme = root / "README.md"
    # a book of a few test notebooks may have no claims or settings page
    claims, settings = (page if page.exists() else None
                        for page in (book / "claims.md", book / "settings.md"))
    changed = update_tables(readme, book / "intro.md", root / "figures", claims, settings)
    print(f"{readme} and the book's pages: tables {'updated' if changed else 'unchanged'}; "
          f"{len(notebooks)} notebook{'s' if len(notebooks) != 1 else ''} in "
          f"{time.perf_counter() - start:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
