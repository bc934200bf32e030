"""The project's shape: small modules without import cycles, short notebook cells, and
nothing that points outside the repository."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
from pathlib import Path

import nbformat
import pytest

import f1lib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "f1lib"
MODULES = sorted(PACKAGE.rglob("*.py"))
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    return [ROOT / name for name in names
            if Path(name).suffix in {".py", ".md", ".ipynb", ".yml", ".toml", ".cfg", ""}
            and (ROOT / name).is_file() and not name.startswith("figures/")]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_module_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= 400


def test_the_regularizer_reads_in_one_sitting():
    assert len((PACKAGE / "regularizer.py").read_text().splitlines()) <= 260


def relative_imports(path: Path) -> set[str]:
    """The f1lib modules that `path` imports (relative imports), wherever the import
    stands: under `if TYPE_CHECKING:` or in a function, a cycle is still a cycle to read."""
    here = path.relative_to(PACKAGE).with_suffix("").parts
    package = here[:-1]  # a module's package; for an __init__.py, its own
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[:len(package) - (node.level - 1)])
            target = base + (node.module.split(".") if node.module else [])
            for alias in node.names:
                candidate = target + [alias.name]
                if (PACKAGE.joinpath(*candidate).with_suffix(".py")).is_file():
                    found.add(".".join(candidate))
                elif target:
                    found.add(".".join(target))
    return {name for name in found if name}


def test_no_import_cycle_among_the_modules():
    graph = {".".join(p.relative_to(PACKAGE).with_suffix("").parts): relative_imports(p)
             for p in MODULES}
    graph = {name.removesuffix(".__init__"): deps for name, deps in graph.items()}
    cycles = []

    def visit(node, path):
        for dep in graph.get(node, ()):
            if dep in path:
                cycles.append(path[path.index(dep):] + [dep])
            elif len(path) < 30:
                visit(dep, path + [dep])

    for name in graph:
        if name:  # the package's __init__ imports every public module by design
            visit(name, [name])
    assert not [c for c in cycles if "__init__" not in c and "" not in c], cycles[:3]


def test_the_train_function_does_not_hide_a_module():
    assert callable(f1lib.train)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("f1lib.train")
    assert importlib.import_module("f1lib.training").train is f1lib.train


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_cells_are_short(path):
    """15 lines at most; the parameters cell, papermill's list of settings, one a line,
    is the exception."""
    nb = nbformat.read(path, as_version=4)
    long = [(k, len(cell.source.splitlines())) for k, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", [])
            and len(cell.source.splitlines()) > 15]
    assert not long, f"cells over 15 lines (index, lines): {long}"


def test_the_project_points_at_nothing_outside_it():
    outside = re.compile(r"REFERENCE\.md|\.\./shared|/ \"shared\"|the seed[']s|seed[ ]paper|"
                         r"\(seed: [0-9]")
    hits = [f"{path.relative_to(ROOT)}:{n}" for path in tracked_text_files()
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
            if outside.search(line) and path.name != "test_codebase.py"]
    assert not hits, hits
