"""Figures and their provenance: where they go and what the record holds."""

import json
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from f1lib.provenance import Provenance, figures_dir, notebook_outputs, repo_root  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_results_never_land_in_the_repository(monkeypatch):
    monkeypatch.delenv("F1LIB_FIGURES", raising=False)
    monkeypatch.chdir(ROOT / "book")
    assert repo_root() == ROOT
    assert figures_dir("quick") == ROOT / "figures"
    assert ROOT not in figures_dir("smoke").parents
    # asked for from elsewhere, as python -m f1lib.reproduce asks, for a notebook run in cwd
    monkeypatch.chdir(ROOT.parent)
    assert figures_dir("quick", cwd=ROOT / "book") == ROOT / "figures"


def test_outside_a_checkout_figures_go_beside_the_notebook(tmp_path, monkeypatch):
    monkeypatch.delenv("F1LIB_FIGURES", raising=False)
    assert figures_dir("paper", cwd=tmp_path) == tmp_path / "figures"
    assert (tmp_path / "figures").is_dir()


def test_record_holds_what_made_the_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("F1LIB_FIGURES", str(tmp_path))
    monkeypatch.chdir(ROOT)
    prov = Provenance("demo.ipynb", "quick", {"seeds": 2})
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = prov.save("demo", fig, tables={"": pd.DataFrame({"a": [1.5]})},
                     results={"gap": 0.25, "bad": float("nan")}, training_s=12.34)
    record = json.loads(path.read_text())
    assert {p.name for p in tmp_path.iterdir()} == {"demo.png", "demo.pdf", "demo.csv",
                                                      "demo.json"}
    assert record["notebook"] == "demo.ipynb" and record["profile"] == "quick"
    assert record["parameters"] == {"seeds": 2}
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode == 0:
        assert record["git"]["commit"] == head.stdout.strip()
    assert record["versions"]["torch"]
    assert record["device"]["torch_device"] in ("cpu", "cuda")
    assert record["wall_time_s"] >= 0 and record["date"].startswith("20")
    assert record["results"] == {"gap": 0.25, "bad": None}  # NaN is not valid JSON
    assert record["training_s"] == 12.3
    assert record["resumed"] is False


def test_a_notebook_that_keeps_to_the_cpu_of_a_gpu_machine_records_the_cpu(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("F1LIB_FIGURES", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "NVIDIA H200")

    def device(**chosen):
        path = Provenance("a.ipynb", "quick", {}, **chosen).save("a")
        return json.loads(path.read_text())["device"]

    assert (device()["torch_device"], device()["gpu"]) == ("cuda", "NVIDIA H200")
    assert (device(device="cpu")["torch_device"], device(device="cpu")["gpu"]) == \
        ("cpu", "NVIDIA H200")
    with pytest.raises(RuntimeError, match="gpu"):
        Provenance("a.ipynb", "quick", {}, device="gpu")


def test_the_cpus_model_comes_from_cpuinfo_and_torchs_vector_unit_joins_the_record(
        tmp_path, monkeypatch):
    from f1lib.provenance import cpu_model

    cpuinfo = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 "
               "96-Core Processor\nflags\t\t: fpu avx2 avx512f\n\nprocessor\t: 1\n"
               "model name\t: AMD EPYC 9654 96-Core Processor\n")
    assert cpu_model(cpuinfo) == "AMD EPYC 9654 96-Core Processor"
    monkeypatch.setattr("platform.processor", lambda: "arm")
    assert cpu_model("processor\t: 0\nBogoMIPS\t: 50.00\n") == "arm"  # no model name line
    monkeypatch.setenv("F1LIB_FIGURES", str(tmp_path))
    device = json.loads(Provenance("a.ipynb", "quick", {}).save("a").read_text())["device"]
    assert device["cpu_capability"] in {"DEFAULT", "NO AVX", "AVX2", "AVX512", "ZVECTOR",
                                        "VSX", "SVE256"}


def test_a_record_cut_short_leaves_the_earlier_one_whole(tmp_path, monkeypatch):
    monkeypatch.setenv("F1LIB_FIGURES", str(tmp_path))
    earlier = Provenance("demo.ipynb", "quick", {}).save("demo", results={"gap": 0.25})
    kept = earlier.read_text()
    write_text = Path.write_text

    def disk_full(self, data, *args, **kwargs):  # half the text, then the error
        write_text(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError):
        Provenance("demo.ipynb", "quick", {}).save("demo", results={"gap": 0.5})
    assert earlier.read_text() == kept and json.loads(kept)["results"] == {"gap": 0.25}
    assert [p.name for p in tmp_path.glob("*.json")] == ["demo.json"]


def test_a_notebook_that_finds_earlier_work_in_its_scratch_folder_says_it_resumed(
        tmp_path, monkeypatch):
    monkeypatch.setenv("F1LIB_FIGURES", str(tmp_path / "figures"))
    monkeypatch.chdir(tmp_path)  # outside a checkout: ./.cache
    fresh = Provenance("demo.ipynb", "quick", {})
    folder = fresh.scratch()
    assert folder == tmp_path / ".cache" / "demo-quick"
    assert not fresh.resumed
    (folder / "run.json").write_text("[]")  # a run that an interrupted execution finished
    again = Provenance("demo.ipynb", "quick", {})
    assert again.scratch() == folder and again.resumed
    record = json.loads(again.save("demo", training_s=5.0).read_text())
    assert record["resumed"] is True and record["training_s"] == 5.0
    assert not Provenance("demo.ipynb", "paper", {}).scratch().joinpath("run.json").exists()


def test_the_note_under_a_figure_says_what_made_it():
    from f1lib.provenance import provenance_markdown

    record = {
        "figure": "mnist", "notebook": "mnist.ipynb", "profile": "paper",
        "parameters": {"seeds": 5, "betas": [0.001, 0.1]},
        "git": {"commit": "0123456789abcdef", "library_modified": True},
        "device": {"torch_device": "cuda", "cpu_count": 16, "gpu": "NVIDIA H100 80GB HBM3"},
        "versions": {"python": "3.12.3", "torch": "2.11.0"},
        "wall_time_s": 117.0, "date": "2026-11-27T02:31:38+00:00",
    }
    note = provenance_markdown(record)
    for part in ("`mnist.ipynb`", "`paper` profile", "NVIDIA H100 80GB HBM3", "`0123456",
                 "uncommitted changes", "2026-11-27T02:31:38+00:00", "117 s", "`seeds=5`",
                 "`betas=[0.001, 0.1]`", "torch 2.11.0", "figures/mnist.*"):
        assert part in note, part
    cpu = dict(record, device={"torch_device": "cpu", "cpu_count": 2},
               git={"commit": "abc", "library_modified": False})
    assert "CPU (2 cores)" in provenance_markdown(cpu)
    # a CPU chapter run on a GPU machine names the CPU it computed on, and the machine
    beside = dict(record, device={"torch_device": "cpu", "cpu_count": 16, "gpu": "NVIDIA H200"})
    assert "on the CPU (16 cores) of a machine with an NVIDIA H200, at" in \
        provenance_markdown(beside)
    assert "uncommitted" not in provenance_markdown(cpu)
    assert "training" not in note  # a figure without runs to train says nothing of it
    # a notebook's wall time counts its own execution; its runs' training time also counts
    # what an interrupted execution trained before this one resumed it
    whole = provenance_markdown(dict(record, training_s=96.4))
    assert "in 117 s of notebook time, 96.4 s of it training the runs." in whole
    resumed = provenance_markdown(dict(record, training_s=290.0, resumed=True))
    assert ("in 117 s of notebook time, resuming an interrupted execution: training its runs "
            "took 290 s in all." in resumed)


def test_a_notebooks_outputs_are_its_records_and_the_files_they_list(tmp_path, monkeypatch):
    monkeypatch.setenv("F1LIB_FIGURES", str(tmp_path))
    monkeypatch.chdir(ROOT)
    table = {"": pd.DataFrame({"a": [1.0]})}
    Provenance("a.ipynb", "quick", {}).save("first", tables=table)
    Provenance("a.ipynb", "quick", {}).save("second", tables={"summary": table[""]})
    Provenance("b.ipynb", "quick", {}).save("other", tables=table)
    (tmp_path / "stray.json").write_text("[1, 2]")  # not a record
    names = sorted(p.name for p in notebook_outputs(tmp_path, "a.ipynb"))
    assert names == ["first.csv", "first.json", "second.json", "second_summary.csv"]
    assert notebook_outputs(tmp_path, "c.ipynb") == []
    # a record cut short, or edited into something else, is named, not passed over
    (tmp_path / "first.json").write_text('{"figure": "first", "notebook": "a.ip')
    with pytest.raises(ValueError, match=r"first\.json is not JSON"):
        notebook_outputs(tmp_path, "a.ipynb")


def test_the_record_names_the_commit_that_f1lib_git_commit_names(tmp_path, monkeypatch):
    from f1lib.provenance import git_state

    for name in ("_config.yml", "book/intro.md", "f1lib/core.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("first\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]

    def commit(message):
        subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
        subprocess.run([*git, "commit", "-qm", message], cwd=tmp_path, check=True)
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, check=True,
                              capture_output=True, text=True).stdout.strip()

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    first = commit("first")
    (tmp_path / "f1lib" / "core.py").write_text("second\n")
    second = commit("second")
    monkeypatch.chdir(tmp_path / "book")
    monkeypatch.delenv("F1LIB_GIT_COMMIT", raising=False)
    assert git_state() == {"commit": second, "library_modified": False}
    # a copy made at one commit, run where git's HEAD is another: the commit named wins
    monkeypatch.setenv("F1LIB_GIT_COMMIT", first)
    assert git_state() == {"commit": first, "library_modified": True,
                           "commit_from": "F1LIB_GIT_COMMIT"}
    monkeypatch.setenv("F1LIB_GIT_COMMIT", second)
    assert git_state()["library_modified"] is False
    (tmp_path / "f1lib" / "new.py").write_text("untracked\n")  # f1lib differs from it now
    assert git_state()["library_modified"] is True
    monkeypatch.setenv("F1LIB_GIT_COMMIT", "f" * 40)  # a commit this repository lacks
    assert git_state() == {"commit": "f" * 40, "library_modified": None,
                           "commit_from": "F1LIB_GIT_COMMIT"}


def test_a_smoke_runs_scratch_folder_goes_when_its_process_ends_even_after_a_failure(tmp_path):
    import os
    import subprocess
    import sys

    code = ("import sys; from f1lib.provenance import scratch_dir; "
            "folder = scratch_dir('nb', 'smoke'); print(folder, flush=True); "
            "(folder / 'run.ckpt').write_text('x'); sys.exit('the notebook failed')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.returncode == 1 and "the notebook failed" in done.stderr
    folder = done.stdout.strip()
    assert folder.startswith(str(tmp_path)) and not os.path.exists(folder)
