"""python -m f1lib.reproduce: every notebook re-run in place, parameters where declared."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch

pytest.importorskip("papermill")

from f1lib.ledger import COSTS_END, COSTS_START, END, START  # noqa: E402
from f1lib.provenance import Provenance  # noqa: E402
from f1lib.reproduce import kernel_threads, main, parse_setting  # noqa: E402


def notebook(parameters: str, body: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    return nb


def make_book(root: Path) -> Path:
    """root/book with an intro page, beside a figures/ folder and a README, with empty
    claims and costs tables."""
    (root / "book").mkdir()
    (root / "figures").mkdir()
    (root / "README.md").write_text(f"{START}\n{END}\n{COSTS_START}\n{COSTS_END}\n")
    (root / "book" / "intro.md").write_text(f"# x\n{COSTS_START}\n{COSTS_END}\n")
    return root / "book"


def test_each_notebook_runs_in_place_with_the_profile_and_its_own_parameters(tmp_path,
                                                                              monkeypatch):
    book = make_book(tmp_path)
    (tmp_path / "README.md").write_text(f"# x\n{START}\nold\n{END}\n{COSTS_START}\n{COSTS_END}\n")
    record = ("import json, os\nfrom f1lib.progress import show_progress\n"
              "json.dump({'profile': os.environ.get('F1LIB_PROFILE'), 'bars': show_progress(), "
              "**{k: v for k, v in globals().items() if k in ('graph', 'n')}}, open(NAME, 'w'))")
    nbformat.write(notebook("graph = True\nn = 1", record.replace("NAME", "'a.json'")),
                   book / "a.ipynb")
    nbformat.write(notebook("n = 1", record.replace("NAME", "'b.json'")), book / "b.ipynb")
    monkeypatch.delenv("F1LIB_PROFILE", raising=False)
    monkeypatch.setenv("F1LIB_PROGRESS", "1")
    assert main(["--profile", "smoke", "--book", str(book), "--set", "graph=False",
                 "--jobs", "2"]) == 0
    # run in the book folder, with the profile in the environment, and without progress
    # bars, whose every redraw papermill would store in the notebook
    assert json.loads((book / "a.json").read_text()) == {"profile": "smoke", "bars": False,
                                                          "graph": False, "n": 1}
    # a parameter the notebook does not declare is not injected
    assert json.loads((book / "b.json").read_text()) == {"profile": "smoke", "bars": False,
                                                          "n": 1}
    # in place: the stored notebook now holds its executed cells
    executed = nbformat.read(book / "a.ipynb", as_version=4)
    assert all(c.get("execution_count") for c in executed.cells if c.cell_type == "code")
    assert "old" not in (tmp_path / "README.md").read_text()


def test_an_unknown_profile_in_the_environment_is_refused_before_any_notebook_runs(
        tmp_path, monkeypatch, capsys):
    book = make_book(tmp_path)
    nbformat.write(notebook("n = 1", "open('ran', 'w').write('yes')"), book / "a.ipynb")
    monkeypatch.setenv("F1LIB_PROFILE", "fast")
    with pytest.raises(SystemExit) as refused:
        main(["--book", str(book)])
    assert refused.value.code == 2 and "unknown profile 'fast'" in capsys.readouterr().err
    assert not (book / "ran").exists()


def test_settings_are_python_literals():
    assert parse_setting("cuda_graph=False") == ("cuda_graph", False)
    assert parse_setting("betas=[0.1, 0.01]") == ("betas", [0.1, 0.01])
    for bad in ("cuda_graph", "1x=2", "name=not a literal"):
        with pytest.raises(Exception, match="--set"):
            parse_setting(bad)
    # the profile is --profile's alone: a --set one would run one profile and watch another
    with pytest.raises(Exception, match="choose the profile with --profile"):
        parse_setting('profile="quick"')


def test_make_reproduce_passes_each_word_of_SET_as_a_setting():
    import shlex

    if shutil.which("make") is None:
        pytest.skip("no make")
    root = Path(__file__).resolve().parents[1]
    shown = subprocess.run(["make", "-n", "reproduce", "PROFILE=smoke",
                            'SET=download=True variants=["stable"]'],
                           cwd=root, capture_output=True, text=True, check=True).stdout
    command = shlex.split(next(line for line in shown.splitlines() if "f1lib.reproduce" in line))
    assert command[command.index("--profile") + 1] == "smoke"
    settings = [command[i + 1] for i, word in enumerate(command) if word == "--set"]
    assert settings == ["download=True", 'variants=["stable"]']  # the shell keeps the quotes
    assert [parse_setting(text) for text in settings] == [("download", True),
                                                          ("variants", ["stable"])]


def test_a_setting_that_no_notebook_declares_is_refused_before_any_notebook_runs(
        tmp_path, capsys):
    book = make_book(tmp_path)
    nbformat.write(notebook("seeds = 2", "open('a.ran', 'w').write('yes')"), book / "a.ipynb")
    nbformat.write(notebook("n = 1", "open('b.ran', 'w').write('yes')"), book / "b.ipynb")
    with pytest.raises(SystemExit) as refused:  # a typo of seeds
        main(["--profile", "smoke", "--book", str(book), "--set", "sedes=3", "--set", "n=2"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "parameter sedes" in err and "n, seeds" in err, err
    assert not (book / "a.ran").exists() and not (book / "b.ran").exists()
    # declared only by a notebook that --only leaves out: it would be dropped, so refused too
    with pytest.raises(SystemExit) as refused:
        main(["--profile", "smoke", "--book", str(book), "--set", "seeds=3", "--only", "b"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "no notebook to run (b) has a parameter seeds" in err
    assert not (book / "b.ran").exists()
    assert main(["--profile", "smoke", "--book", str(book), "--set", "n=3", "--only", "b"]) == 0
    assert (book / "b.ran").exists() and not (book / "a.ran").exists()


def test_a_failing_notebook_fails_the_run_and_the_others_still_run(tmp_path, capsys):
    book = make_book(tmp_path)
    nbformat.write(notebook("n = 1", "raise RuntimeError('broken on purpose')"), book / "a.ipynb")
    nbformat.write(notebook("n = 1", "open('b.done', 'w').write('yes')"), book / "b.ipynb")
    assert main(["--profile", "smoke", "--book", str(book)]) == 1
    out = capsys.readouterr().out
    assert "a.ipynb FAILED" in out and "broken on purpose" in out and "failed: a.ipynb" in out
    assert (book / "b.done").read_text() == "yes"


def test_a_notebook_that_fails_leaves_the_book_its_notebook_and_figures(tmp_path, monkeypatch):
    book = make_book(tmp_path)
    figures = tmp_path / "figures"
    monkeypatch.setenv("F1LIB_FIGURES", str(figures))  # the kernels inherit it
    save = ("from f1lib.provenance import Provenance\nimport pandas as pd\n"
            "Provenance('NAME.ipynb', 'quick', {}).save('NAME', tables=TABLES)\n")
    # the book as an earlier execution left it: a's figure, and its notebook
    Provenance("a.ipynb", "quick", {}).save("a", tables={"": pd.DataFrame({"x": [1]})})
    nbformat.write(notebook("n = 1", save.replace("NAME", "a").replace(
        "TABLES", "{'': pd.DataFrame({'x': [2]}), 'extra': pd.DataFrame({'y': [3]})}")
        + "raise RuntimeError('broken after its figure')"), book / "a.ipynb")
    nbformat.write(notebook("n = 1", save.replace("NAME", "b").replace(
        "TABLES", "{'': pd.DataFrame({'z': [4]})}")), book / "b.ipynb")
    before = {path.name: path.read_bytes() for path in figures.iterdir()}
    stored = (book / "a.ipynb").read_bytes()
    assert main(["--profile", "quick", "--book", str(book)]) == 1
    # a: the book's notebook and figure files are the earlier execution's, byte for byte
    assert (book / "a.ipynb").read_bytes() == stored
    assert {name: (figures / name).read_bytes() for name in before} == before
    # what the failed execution wrote is kept aside, beside its partial notebook
    kept = tmp_path / ".cache" / "reproduce"
    assert sorted(path.name for path in (kept / "a.figures").iterdir()) == [
        "a.csv", "a.json", "a_extra.csv"]
    assert pd.read_csv(kept / "a.figures" / "a.csv")["x"].tolist() == [2]
    assert "broken after its figure" in (kept / "a.ipynb").read_text()
    # b ended well: its notebook and figure replace the book's
    assert sorted(path.name for path in figures.iterdir()) == sorted([*before, "b.csv", "b.json"])
    executed = nbformat.read(book / "b.ipynb", as_version=4)
    assert all(c.get("execution_count") for c in executed.cells if c.cell_type == "code")
    assert not (kept / "b.ipynb").exists()


def test_a_long_run_says_how_far_each_running_notebook_is(tmp_path, monkeypatch, capsys):
    book = make_book(tmp_path)
    nb = notebook("n = 1", "import time\ntime.sleep(4)")
    nb.cells.append(nbformat.v4.new_code_cell("x = 2"))  # 3 cells: the sleep is the second
    nbformat.write(nb, book / "a.ipynb")
    monkeypatch.setattr("f1lib.reproduce.STATUS_INTERVAL_S", 1.0)
    assert main(["--profile", "smoke", "--book", str(book)]) == 0
    status = [line for line in capsys.readouterr().out.splitlines()
              if line.startswith("== running: ")]
    # papermill's own count, read from its log: the parameters cell done, the sleep running
    assert "== running: a.ipynb (1 of 3 cells done, 0 min)" in status, status


@pytest.mark.parametrize("at_once, cores, each", [(2, 16, 8), (4, 16, 4), (3, 16, 5),
                                                   (4, 2, 1), (1, 2, 2)])
def test_notebooks_run_together_share_the_cores_equally(at_once, cores, each):
    assert kernel_threads(at_once, cores) == each


def test_each_of_the_notebooks_run_together_gets_its_share_of_threads_unless_set_by_hand(
        tmp_path, monkeypatch, capsys):
    book = make_book(tmp_path)
    for name in ("a", "b"):
        nbformat.write(notebook("n = 1", "import json, os, torch\njson.dump([os.environ.get("
                                         f"'OMP_NUM_THREADS'), torch.get_num_threads()], "
                                         f"open('{name}.threads', 'w'))"),
                       book / f"{name}.ipynb")

    def threads():
        return [json.loads((book / f"{name}.threads").read_text()) for name in ("a", "b")]

    # two cores, as if this machine's
    monkeypatch.setattr("f1lib.reproduce.usable_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    # on a CPU-only machine, where the notebooks train on the CPU, torch's threads stay
    monkeypatch.setattr("f1lib.reproduce.shares_threads", lambda: False)
    assert main(["--profile", "smoke", "--book", str(book), "--jobs", "2"]) == 0
    assert [setting for setting, _ in threads()] == [None, None]
    assert "at once on" not in capsys.readouterr().out
    # on a GPU machine, where they paint or read their data on the CPU and train on the GPU
    monkeypatch.setattr("f1lib.reproduce.shares_threads", lambda: True)
    # two notebooks under --jobs 4 run two at once: a core each
    assert main(["--profile", "smoke", "--book", str(book), "--jobs", "4"]) == 0
    assert threads() == [["1", 1], ["1", 1]]
    assert "2 notebooks at once on 2 cores: 1 CPU thread each" in capsys.readouterr().out
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert main(["--profile", "smoke", "--book", str(book), "--jobs", "2"]) == 0
    assert [setting for setting, _ in threads()] == ["7", "7"]
    assert "at once on" not in capsys.readouterr().out


def test_only_runs_the_named_notebooks_and_refuses_unknown_names(tmp_path):
    book = make_book(tmp_path)
    for name in ("a", "b"):
        nbformat.write(notebook("n = 1", f"open('{name}.done', 'w').write('yes')"),
                       book / f"{name}.ipynb")
    assert main(["--profile", "smoke", "--book", str(book), "--only", "b"]) == 0
    assert (book / "b.done").exists() and not (book / "a.done").exists()
    with pytest.raises(SystemExit):
        main(["--profile", "smoke", "--book", str(book), "--only", "b", "nope"])
    assert not (book / "a.done").exists()


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] in "ZX"
    except (FileNotFoundError, IndexError):
        return True


def stop_when_marked(book: Path, marker: str, signum: int = signal.SIGTERM,
                     group: bool = True) -> None:
    """Run the book, send `signum` to python -m f1lib.reproduce's process group, as `timeout`
    does, once book/marker holds the kernel's pid, and check that the run stops with the
    notebook unfinished, the book's copy untouched and its kernel gone."""
    stored = (book / "a.ipynb").read_bytes()
    reproduce = subprocess.Popen([sys.executable, "-m", "f1lib.reproduce", "--profile", "smoke",
                                  "--book", str(book)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)  # a group of its own, as timeout's
    deadline = time.monotonic() + 90
    while not (book / marker).exists() or not (book / marker).read_text():
        assert time.monotonic() < deadline and reproduce.poll() is None
        time.sleep(0.2)
    kernel = int((book / marker).read_text())
    (os.killpg if group else os.kill)(reproduce.pid, signum)
    out, err = reproduce.communicate(timeout=60)
    if signum == signal.SIGKILL:  # nothing is said; papermill goes with the group, or after
        # its parent alone (PR_SET_PDEATHSIG)
        assert reproduce.returncode == -signal.SIGKILL
    else:
        assert reproduce.returncode == 128 + signum and "Traceback" not in err, err
        assert "a.ipynb stopped unfinished" in out
    assert (book / "a.ipynb").read_bytes() == stored
    deadline = time.monotonic() + 20
    while not gone(kernel):
        assert time.monotonic() < deadline, "the notebook's kernel outlived the run"
        time.sleep(0.2)


@pytest.mark.parametrize("signum, group", [(signal.SIGTERM, True), (signal.SIGINT, True),
                                           (signal.SIGKILL, True), (signal.SIGKILL, False)],
                         ids=["SIGTERM", "SIGINT (Ctrl-C)", "SIGKILL", "kill -9 of it alone"])
def test_a_stop_ends_the_running_notebooks_and_their_kernels(tmp_path, signum, group):
    book = make_book(tmp_path)
    nbformat.write(notebook("n = 1", "import os, time\nopen('pid', 'w').write(str(os.getpid()))"
                            "\ntime.sleep(120)"), book / "a.ipynb")
    stop_when_marked(book, "pid", signum, group)


def test_sigterm_lets_a_training_notebook_write_its_checkpoint_at_the_step_it_stops(tmp_path):
    book = make_book(tmp_path)
    # a run far too long to finish, whose interval writes no checkpoint before its end: a
    # file can only come from the stop; "training" appears after its first outer loop
    body = """
import os
import f1lib
from f1lib.data.gaussians import gaussian_problem

x, positive = gaussian_problem(n=90, separation=3.0, offset=1.0, seed=0)

def mark(model):
    open("training", "w").write(str(os.getpid()))
    return {}

f1lib.train(f1lib.FixedFeatures(), f1lib.TensorData(x.float(), None, positive),
            f1lib.F1Regularizer(positive, features=2),
            schedule=f1lib.Schedule(outer=10**6, inner=50, batch_size=16), evaluate=mark,
            checkpoint="run.ckpt", checkpoint_interval=1e9, progress=False)
"""
    nbformat.write(notebook("n = 1", body), book / "a.ipynb")
    stop_when_marked(book, "training")
    state = torch.load(book / "run.ckpt", weights_only=False)
    assert state["outer"] >= 1 and len(state["histories"][0]) == state["outer"]
    # the kernel was interrupted, not left to its parent poller: the traceback is in the log
    assert "KeyboardInterrupt" in (book.parent / ".cache" / "reproduce" / "a.log").read_text()
