"""Run a notebook as a Colab user does: a first cell of our own, then the notebook's cells, in one kernel.

Run by the emulated runtime's own Python (its nbclient, jupyter_client and ipykernel), from tests/test_colab.py:

    python run_notebook.py NOTEBOOK FIRST_CELL_FILE OUT_JSON
"""

import json
import sys

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def main(notebook: str, first_cell: str, out: str) -> int:
    nb = nbformat.read(notebook, as_version=4)
    with open(first_cell) as f:
        nb.cells.insert(0, nbformat.v4.new_code_cell(f.read()))
    error = None
    try:
        NotebookClient(nb, timeout=900, kernel_name="python3").execute()
    except CellExecutionError as exc:
        error = str(exc)[-4000:]
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    result = {
        "error": error,
        "stream": "".join(o.get("text", "") for o in outputs if o.output_type == "stream"),
        "figures": sum("image/png" in o.get("data", {}) for o in outputs),
    }
    with open(out, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
