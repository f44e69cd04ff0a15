"""Every notebook runs top to bottom headless in quick mode and shows at least one figure."""

import ast
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
#: What each notebook prints only when its main cell really ran (and, for the comparison, every check passed).
MARKERS = {
    "batch_norm.ipynb": r"^epoch 1, loss \d",
    "claims.ipynb": r"^== LayerNorm, batch 16, seed 0 ==$",
    "compare_with_gluon.ipynb": r"^(\d+) of \1 checks pass$",
    "exercises.ipynb": r"^== nn\.BatchNorm, seed 1 ==$",
    "multiple_devices.ipynb": r"^== synchronized BN LeNet on \[cpu\(0\), cpu\(1\)\] \(shared start\) ==$",
}


def test_there_are_notebooks():
    assert {nb.name for nb in NOTEBOOKS} == set(MARKERS)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[nb.name for nb in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path, tmp_path, monkeypatch, real_data_dir):
    monkeypatch.setenv("GLUON_BN_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()  # raises on any cell error
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure shown"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert re.search(MARKERS[path.name], text, re.M), MARKERS[path.name]
    assert "MXNet was imported before gluon_bn" not in text  # the notebook gets gluon-bn's thread set-up


def test_markers_tell_a_failed_check_apart():
    assert re.search(MARKERS["compare_with_gluon.ipynb"], "42 of 42 checks pass\n", re.M)
    assert not re.search(MARKERS["compare_with_gluon.ipynb"], "40 of 42 checks pass\n", re.M)


def _imported_modules(source: str) -> set[str]:
    """Every module a code cell imports (IPython's ! and % lines left out)."""
    tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("!", "%"))))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[nb.name for nb in NOTEBOOKS])
def test_notebooks_import_the_library_never_a_command(path):
    nb = nbformat.read(path, as_version=4)
    imported = set().union(*(_imported_modules(c.source) for c in nb.cells if c.cell_type == "code"))
    assert any(name.startswith("gluon_bn") for name in imported)
    assert sorted(n for n in imported if n == "gluon_bn.commands" or n.startswith("gluon_bn.commands.")) == []


def test_the_import_check_sees_a_command():
    assert "gluon_bn.commands" in _imported_modules("from gluon_bn import commands\n%matplotlib inline")
    assert "gluon_bn.commands.compare" in _imported_modules("import gluon_bn.commands.compare as c")
