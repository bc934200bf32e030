"""The notebooks as Colab runs them: a fresh environment with only what Colab preinstalls,
no f1lib, and each notebook's install cell fetching f1lib from a repository.

The repository is a local bare clone of this checkout's HEAD (`git+file://`), the install
cell is written for it by `python -m f1lib.colab`, a `google.colab` package stands in for
Colab's, and papermill runs every notebook under the smoke profile on a kernel of that
environment. The environment's packages, and the extras the cell installs, come from the
package index: set F1LIB_COLAB_TEST=0 to skip this test where there is none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
# what Colab's runtime has installed before any cell runs (torch at this project's pin)
COLAB_PACKAGES = ["torch==2.14.1", "torchvision==0.29.1", "numpy", "pandas", "scipy",
                  "matplotlib", "seaborn", "tqdm", "ipykernel"]

pytestmark = pytest.mark.skipif(os.environ.get("F1LIB_COLAB_TEST") == "0",
                                reason="F1LIB_COLAB_TEST=0: no package index at hand")


@pytest.fixture(scope="module")
def colab_like(tmp_path_factory):
    """(a kernel name, the environment to run papermill in, a folder of the notebooks with
    their install cells pointing at the bare clone)."""
    work = tmp_path_factory.mktemp("colab")
    bare = work / "f1lib.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(ROOT), str(bare)], check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # a current pip, as Colab's (the venv's bundled one may predate its URL requirements)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip>=24",
                    *COLAB_PACKAGES], check=True, timeout=1200)
    kernels = work / "kernels"
    subprocess.run([str(python), "-m", "ipykernel", "install", "--prefix", str(kernels),
                    "--name", "colab-like"], check=True, capture_output=True)
    fake = work / "colab-runtime"  # google.colab, as Colab's runtime has it
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "__init__.py").write_text("")
    (fake / "google" / "colab" / "__init__.py").write_text("")
    book = work / "book"
    book.mkdir()
    for path in NOTEBOOKS:
        (book / path.name).write_bytes(path.read_bytes())
    subprocess.run([sys.executable, "-m", "f1lib.colab", "--book", str(book), "--url",
                    bare.as_uri(), "--ref", head], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(fake), "F1LIB_PROFILE": "smoke",
           "JUPYTER_PATH": str(kernels / "share" / "jupyter"),
           "F1LIB_FIGURES": str(work / "figures"), "F1LIB_PROGRESS": "0"}
    return python, env, book


def test_colab_preinstalls_no_f1lib(colab_like):
    python, env, _ = colab_like
    found = subprocess.run([str(python), "-c", "import importlib.util as u; "
                            "print(u.find_spec('f1lib'), u.find_spec('google.colab') is not None)"],
                           env=env, capture_output=True, text=True, cwd="/", check=True)
    assert found.stdout.split() == ["None", "True"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_each_notebook_installs_f1lib_and_runs_as_in_colab(colab_like, notebook):
    python, env, book = colab_like
    out = book / f"{notebook.stem}.out.ipynb"
    done = subprocess.run([sys.executable, "-m", "papermill", str(book / notebook.name),
                           str(out), "-k", "colab-like", "--cwd", str(book)], env=env,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    where = subprocess.run([str(python), "-c", "import f1lib; print(f1lib.__file__)"],
                           env=env, capture_output=True, text=True, cwd="/", check=True)
    assert "site-packages" in where.stdout  # installed by the cell, not found in a checkout
    cells = json.loads(out.read_text())["cells"]
    assert all(c.get("metadata", {}).get("papermill", {}).get("status") == "completed"
               for c in cells if c["cell_type"] == "code")
