"""Colab's current runtime, emulated: the Colab block installs gluon-bn and changes nothing Colab has.

A Python 3.13 venv holds Colab's own versions of everything gluon-bn, MXNet, d2l, the notebooks and their kernel
touch (``tests/colab/runtime.txt``, from googlecolab/backend-info's pip-freeze.txt). Into a fresh copy of this
repository, the Colab block is run from a kernel that was already running, as a Colab user runs it; then the
notebooks run in that kernel with no restart. Colab itself cannot be reached from here. The block, and the list of
stale requirements ``pip check`` shows, are read where a reader finds them: in the README, or in the docs page the
README links to for them.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from packaging.utils import canonicalize_name
from readme_blocks import (
    ON_A_REAL_SUBSET,
    README,
    REPORT_PIECES,
    fenced_block,
    linked_page,
    readme_or_linked_block,
    section,
)
from test_notebooks import MARKERS, NOTEBOOKS

pytestmark = pytest.mark.colab

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "tests" / "colab" / "runtime.txt"
#: What the Colab block may add to the runtime; everything else must keep its version.
ADDED = {"d2l", "gluon-bn", "mxnet"}


def _python313() -> str:
    """A CPython 3.13, as Colab runs: on PATH, or pyenv's."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [shutil.which("python3.13"), *map(str, sorted(pyenv.glob("versions/3.13*/bin/python3.13")))]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    pytest.fail("the Colab emulation needs CPython 3.13 (pyenv install 3.13, or python3.13 on PATH)")


def _packages(venv: Path) -> dict[str, str]:
    """Every installed distribution's version."""
    listed = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True
    ).stdout
    return {canonicalize_name(p["name"]): p["version"] for p in json.loads(listed)}


def _fresh_copy(destination: Path) -> None:
    """The repository as a clone of it has it: the files git tracks, and new ones it does not ignore."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, real_data_dir):
    """The emulated runtime before the install: its venv, its packages, and a fresh copy of this repository."""
    base = tmp_path_factory.mktemp("colab")
    venv = base / "venv"
    subprocess.run([_python313(), "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(Path(sys.executable).with_name("uv")),
            "pip",
            "install",
            "--quiet",
            "--no-config",
            "--python",
            str(venv / "bin" / "python"),
            "--no-deps",
            "-r",
            str(RUNTIME),
        ],
        cwd=base,
        check=True,
        timeout=600,
    )  # --no-config: this repository's [tool.uv] overrides would lift Colab's versions
    clone = base / "gluon-bn"
    _fresh_copy(clone)
    env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "GLUON_BN_QUICK": "1",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    return SimpleNamespace(
        base=base, venv=venv, python=str(venv / "bin" / "python"), clone=clone, env=env, before=_packages(venv)
    )


def _first_cell(runtime) -> str:
    """What a Colab user puts first: NumPy is loaded in the kernel before anything is installed, then the block."""
    lines = [line for line in readme_or_linked_block("Colab", "bash").splitlines() if line.strip()]
    return "\n".join(["import numpy, matplotlib.pyplot", f"%cd {runtime.clone}", *(f"!{line}" for line in lines)])


def _run_notebook(runtime, notebook: Path) -> dict:
    first = runtime.base / "first_cell.py"
    first.write_text(_first_cell(runtime))
    out = runtime.base / f"{notebook.stem}.json"
    subprocess.run(
        [runtime.python, str(ROOT / "tests" / "colab" / "run_notebook.py"), str(notebook), str(first), str(out)],
        cwd=runtime.base,
        env=runtime.env,
        check=True,
        timeout=1800,
    )
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def installed(runtime):
    """The chapter's notebook run with the Colab block as its first cell: the install happens in a running kernel."""
    first = _run_notebook(runtime, ROOT / "notebooks" / "batch_norm.ipynb")
    return SimpleNamespace(first_notebook=first, after=_packages(runtime.venv))


def _in_runtime(runtime, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [runtime.python, "-c", code], capture_output=True, text=True, env=runtime.env, cwd=runtime.base, timeout=900
    )


def _read_here_or_linked(heading: str) -> str:
    """The text under the heading naming ``heading``: in the README, or in the page the README links for it."""
    try:
        return section(heading, README)
    except AssertionError:
        return section(heading, linked_page(heading))


def test_the_colab_block_is_one_shell_block_under_a_colab_heading():
    lines = readme_or_linked_block("Colab", "bash").splitlines()
    assert lines and all(not line.startswith(("!", "%", ">>>")) for line in lines)
    assert _read_here_or_linked("Colab").count("```") == 2  # one fenced block, and nothing else fenced there


def test_the_runtime_is_colabs(runtime):
    assert runtime.before["numpy"] == "2.1.3" and runtime.before["numba"] == "0.61.2"
    assert runtime.before["matplotlib"] == "3.10.0" and runtime.before["pandas"] == "2.2.3"
    assert not ADDED & set(runtime.before)


def test_the_install_changes_no_preinstalled_package(runtime, installed):
    changed = {
        name: (version, installed.after.get(name))
        for name, version in runtime.before.items()
        if installed.after.get(name) != version
    }
    assert changed == {}
    assert set(installed.after) - set(runtime.before) == ADDED


def test_numba_still_imports(runtime, installed):
    done = _in_runtime(runtime, "import numba, numpy; print(numba.__version__, numpy.__version__)")
    assert done.stdout.split() == ["0.61.2", "2.1.3"], done.stderr[-2000:]


@pytest.mark.parametrize(
    "code",
    [
        "import mxnet as mx\nprint('sum', mx.nd.ones((2, 3)).sum().asscalar())",
        "from d2l import mxnet as d2l\nfrom mxnet import np, npx\nnpx.set_np()\n"
        "print('sum', float(np.ones((2, 3)).sum()))",
        "import gluon_bn\nimport mxnet as mx\nprint('sum', mx.nd.ones((2, 3)).sum().asscalar())",
    ],
    ids=["mxnet first", "d2l first", "gluon_bn first"],
)
def test_any_import_order_works_on_colabs_numpy(runtime, installed, code):
    done = _in_runtime(runtime, code)
    assert done.returncode == 0 and "sum 6.0" in done.stdout, done.stderr[-3000:]


def test_pip_check_names_nothing_of_gluon_bn_and_the_readme_lists_the_rest(runtime, installed):
    done = subprocess.run([runtime.python, "-m", "pip", "check"], capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    assert lines and not [line for line in lines if line.lower().startswith(("gluon-bn", "gluon_bn"))]
    listed = _read_here_or_linked("pip check")  # the section a reader is sent to for it
    stale = [line for line in lines if line.startswith(("mxnet ", "d2l "))]
    assert stale and [line for line in stale if line.split(",")[0].split(" has requirement ")[-1] not in listed] == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[nb.name for nb in NOTEBOOKS])
def test_every_notebook_runs_with_no_restart(runtime, installed, path):
    result = installed.first_notebook if path.name == "batch_norm.ipynb" else _run_notebook(runtime, path)
    assert result["error"] is None, result["error"]
    assert result["figures"] > 0
    assert re.search(MARKERS[path.name], result["stream"], re.M), result["stream"][-2000:]


def test_the_readme_using_the_pieces_block_runs_as_written_mxnet_first(runtime, installed):
    block = fenced_block("Using the pieces", "python")
    assert block.startswith("import mxnet")
    done = _in_runtime(runtime, ON_A_REAL_SUBSET + block + REPORT_PIECES)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "epochs [1, 2, 3, 4, 5] gamma (1, 6, 1, 1)" in done.stdout


def test_a_d2l_reader_trains_one_epoch_with_gluon_bn_installed_not_imported(runtime, installed, real_data_dir):
    done = subprocess.run(
        [runtime.python, str(ROOT / "tests" / "d2l_reader.py"), str(real_data_dir)],
        capture_output=True,
        text=True,
        env=runtime.env,
        cwd=runtime.base,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "gluon_bn imported: False" in done.stdout
    assert "d2l epoch done: 469 batches, 60000 examples" in done.stdout
