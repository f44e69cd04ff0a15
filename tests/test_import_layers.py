"""gluon_bn's sub-packages import downward only: import-linter's layers contract (pyproject.toml) holds, and it
breaks when a chapter module imports gluon_bn.parallel, at the top or inside a function."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    """lint-imports with the repository's contract, over the gluon_bn package found in ``tree``."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=tree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layers_hold():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    "added",
    [
        "from ..parallel import hosts  # noqa\n",
        "\n\ndef _reach_up():\n    from gluon_bn.parallel import distributed  # noqa\n\n    return distributed\n",
    ],
    ids=["at the top", "inside a function"],
)
def test_a_chapter_module_importing_parallel_breaks_them(tmp_path, added):
    shutil.copytree(ROOT / "gluon_bn", tmp_path / "gluon_bn", ignore=shutil.ignore_patterns("__pycache__"))
    module = tmp_path / "gluon_bn" / "chapter" / "data.py"
    text = module.read_text()
    module.write_text(added + text if added.startswith("from") else text + added)
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "gluon_bn.chapter.data -> gluon_bn.parallel" in result.stdout
    assert "0 kept, 1 broken" in result.stdout
