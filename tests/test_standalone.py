"""Each notebook runs on its own, as in Colab: copied alone into an empty folder and
executed by papermill (smoke profile) against f1lib installed from a built wheel,
not from this source tree. What a notebook needs must come with the package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))

pytest.importorskip("papermill")


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory) -> Path:
    """f1lib built into a wheel and unpacked into a folder of its own."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(out), str(ROOT)], check=True)
    wheels = list(out.glob("f1lib-*.whl"))
    assert len(wheels) == 1, wheels
    site = out / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheels[0])], check=True)
    return site


def standalone_env(site: Path, figures: Path) -> dict:
    env = dict(os.environ)
    # the wheel's f1lib first on the path; the checkout's folders out of reach
    env["PYTHONPATH"] = str(site)
    env["F1LIB_PROFILE"] = "smoke"
    env["F1LIB_FIGURES"] = str(figures)
    return env


def test_the_wheel_holds_the_whole_library(wheel_site, tmp_path):
    found = subprocess.run(
        [sys.executable, "-c", "import f1lib, f1lib.data.mnist, f1lib.data.sky; "
                               "print(f1lib.__file__)"],
        cwd=tmp_path, env=standalone_env(wheel_site, tmp_path), capture_output=True, text=True,
        check=True)
    assert Path(found.stdout.strip()).is_relative_to(wheel_site)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_alone_in_an_empty_folder(wheel_site, tmp_path, notebook):
    work = tmp_path / "alone"
    work.mkdir()
    copy = work / notebook.name
    copy.write_bytes(notebook.read_bytes())
    figures = tmp_path / "figures"
    result = subprocess.run(
        [sys.executable, "-m", "papermill", str(copy), str(work / "out.ipynb"), "--cwd",
         str(work), "--kernel", "python3", "--log-level", "ERROR"],
        cwd=work, env=standalone_env(wheel_site, figures), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(figures.glob("*.json")), "the notebook saved no figure record"
    # nothing was written next to the notebook but its output and the scratch folders
    assert {p.name for p in work.iterdir()} <= {notebook.name, "out.ipynb", ".cache"}


def test_the_wheel_and_the_sdist_each_install_and_run_the_readmes_example(tmp_path):
    """`python -m build` gives both; each, installed into a folder of its own, imports as
    f1lib at its version, with its licence, and runs the README's first example."""
    import re
    import zipfile

    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist),
                    str(ROOT)], check=True, capture_output=True)
    wheel, = dist.glob("f1lib-*.whl")
    sdist, = dist.glob("f1lib-*.tar.gz")
    import f1lib
    assert wheel.name.startswith(f"f1lib-{f1lib.__version__}-")
    assert any(name.endswith("LICENSE") for name in zipfile.ZipFile(wheel).namelist())
    readme = (ROOT / "README.md").read_text()
    example = re.findall(r"```python\n(.*?)```", readme, re.S)[0]
    given = ("import torch\nfrom f1lib import SharedHeadMLP\n"
             "x = torch.randn(60, 2); y = (x[:, 0] > 0).long(); positive = y.bool(); d = 1\n"
             "model = SharedHeadMLP(in_features=2, hidden=8, classes=2)\n")
    check = ("import f1lib, pathlib, sys\n"
             "assert pathlib.Path(f1lib.__file__).is_relative_to(sys.argv[1]), f1lib.__file__\n"
             + given + example.replace("outer=40, inner=600, batch_size=100",
                                       "outer=2, inner=3, batch_size=20")
             + "\nassert len(history) == 2\nprint(f1lib.__version__)\n")
    for artifact in (wheel, sdist):
        site = tmp_path / artifact.name.split("-")[-1].split(".")[0] / "site"
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                        "-q", "--target", str(site), str(artifact)], check=True)
        env = {**os.environ, "PYTHONPATH": str(site)}
        done = subprocess.run([sys.executable, "-c", check, str(site)], cwd=tmp_path, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, f"{artifact.name}: {done.stderr[-2000:]}"
        assert done.stdout.split()[-1] == f1lib.__version__
