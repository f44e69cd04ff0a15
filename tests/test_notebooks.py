"""Every notebook runs top to bottom headless in quick mode and shows at least one figure."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
#: Something each notebook prints only when its main cell really ran.
MARKERS = {"batch_norm.ipynb": "epoch 1, loss", "compare_with_gluon.ipynb": "checks pass",
           "exercises.ipynb": "== nn.BatchNorm, seed 1 =="}


def test_there_are_notebooks():
    assert {nb.name for nb in NOTEBOOKS} == set(MARKERS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[nb.name for nb in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path, tmp_path, monkeypatch, real_data_dir):
    monkeypatch.setenv("GLUON_BN_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises on any cell error
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure shown"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert MARKERS[path.name] in text
