"""The book's notebooks: parameterised, listed in the table of contents, stored clean.

Executing them is nbval's job (`make test`); these checks need no kernel.
"""

import re
from pathlib import Path

import nbformat
import pytest
import yaml

BOOK = Path(__file__).resolve().parents[1] / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))


def toc_files():
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    files = [toc["root"]]
    for chapter in toc.get("chapters", []):
        files.append(chapter["file"])
    return files


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_parameterised_listed_and_error_free(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert 'profile = "auto"' in tagged[0].source
    assert path.stem in toc_files()
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"stored error in {path.name}"
            # a cell's last expression that returns an object, not a table or a figure,
            # shows the reader its repr, such as PosixPath('/the/machine/figures/x.json')
            if output.output_type == "execute_result" and set(output.data) == {"text/plain"}:
                shown = output.data["text/plain"]
                assert not re.match(r"(Posix|Windows)?Path\(|<[\w.]+ (object )?at 0x", shown), \
                    f"{path.name} shows a repr: {shown}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_setting_of_a_notebooks_profiles_is_one_of_its_parameters(path):
    # papermill, reproduce --set and a reader in Colab reach a setting through the parameters
    # cell only: one that the profiles hold but the cell lacks cannot be changed
    import ast

    from f1lib.profiles import PROFILES

    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    names = {target.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
             for target in node.targets}
    assert names == {"profile", *PROFILES[path.stem]["defaults"]}


def test_nbval_of_the_book_defaults_to_the_smoke_profile_and_leaves_figures_alone():
    # a bare `pytest --nbval book/` must not overwrite the committed figures
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "F1LIB_PROFILE"}
    probe = ("import runpy; runpy.run_path('book/conftest.py'); "
             "from f1lib.profiles import resolve_profile; "
             "from f1lib.provenance import figures_dir; "
             "print(resolve_profile('auto'), figures_dir(resolve_profile('auto')))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=BOOK.parent, env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "smoke"
    assert Path(out[1]).resolve() != (BOOK.parent / "figures").resolve()
    env["F1LIB_PROFILE"] = "quick"  # a profile asked for is kept
    out = subprocess.run([sys.executable, "-c", probe], cwd=BOOK.parent, env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "quick"


def test_the_api_page_documents_every_public_name_of_f1lib():
    import f1lib

    page = (BOOK / "api.md").read_text()
    documented = set(re.findall(r"\.\. auto(?:class|function):: f1lib\.(\w+)", page))
    assert "api" in toc_files()
    assert set(f1lib.__all__) <= documented, set(f1lib.__all__) - documented


@pytest.mark.parametrize("module", [
    "f1lib.data.mnist", "f1lib.data.sky", "f1lib.data.coco_stuff", "f1lib.data.coco_download",
    "f1lib.data.procedural_sky", "f1lib.data.sky_common", "f1lib.data.gaussians",
    "f1lib.metrics", "f1lib.stats", "f1lib.sky_claims"])
def test_the_api_page_documents_every_public_function_and_class_of_the_data_and_metrics(module):
    import importlib
    import inspect

    mod = importlib.import_module(module)
    public = {name for name, obj in vars(mod).items()
              if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
              and obj.__module__ == module}
    page = (BOOK / "api.md").read_text()
    documented = set(re.findall(rf"\.\. auto(?:class|function):: {re.escape(module)}\.(\w+)", page))
    assert public and public <= documented, public - documented
