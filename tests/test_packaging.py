"""Ranges in pyproject.toml, the one lock that satisfies them, setup.sh's Python, and a wheel with every module."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from readme_blocks import ON_A_REAL_SUBSET, REPORT_PIECES, fenced_block

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PYTHONS = ("3.10", "3.11", "3.12", "3.13")


def _locked(python: str) -> dict[str, str]:
    """requirements.lock's exact version of every package on ``python`` (markers evaluated)."""
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        req = Requirement(line)
        if req.marker and not req.marker.evaluate({"python_version": python, "python_full_version": f"{python}.0"}):
            continue
        (spec,) = req.specifier
        assert spec.operator == "==", f"not an exact pin: {line!r}"
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def _ranges(python: str) -> list[Requirement]:
    """What gluon-bn asks for on ``python``: its dependencies, the CPU build of MXNet and the test tools."""
    project = PYPROJECT["project"]
    texts = (
        project["dependencies"] + project["optional-dependencies"]["mxnet"] + project["optional-dependencies"]["test"]
    )
    return [r for r in map(Requirement, texts) if not r.marker or r.marker.evaluate({"python_version": python})]


@pytest.mark.parametrize("python", PYTHONS)
def test_the_lock_satisfies_every_range_on_every_python(python):
    locked = _locked(python)
    for req in _ranges(python):
        assert canonicalize_name(req.name) in locked, f"{req.name} is not in requirements.lock for {python}"
        assert req.specifier.contains(locked[canonicalize_name(req.name)], prereleases=True), (python, str(req))


def test_the_ranges_are_ranges_and_mxnet_is_not_a_requirement():
    """Installed into someone's environment, gluon-bn forces no exact version on it, and a CUDA build of MXNet
    (mxnet-cu1xx) satisfies it as well as the CPU build."""
    project = PYPROJECT["project"]
    for text in project["dependencies"] + project["optional-dependencies"]["test"]:
        assert not any(spec.operator == "==" for spec in Requirement(text).specifier), text
    assert "mxnet" not in {Requirement(t).name for t in project["dependencies"]}
    assert project["optional-dependencies"]["mxnet"] == ["mxnet==1.9.1"]


@pytest.mark.parametrize(
    "python, numpy", [("3.10", "1.23.5"), ("3.11", "1.23.5"), ("3.12", "1.26.4"), ("3.13", "2.5.5")]
)
def test_each_python_gets_the_numpy_that_has_wheels_for_it(python, numpy):
    locked = _locked(python)
    assert locked["mxnet"] == "1.9.1" and locked["d2l"] == "1.0.3" and locked["numpy"] == numpy
    assert ("setuptools" in {canonicalize_name(r.name) for r in _ranges(python)}) == (python >= "3.12")
    overrides = {canonicalize_name(Requirement(t).name) for t in PYPROJECT["tool"]["uv"]["override-dependencies"]}
    assert {"numpy", "matplotlib", "pandas", "scipy", "graphviz"} <= overrides  # d2l's and MXNet's stale pins


def test_setup_ci_and_conda_read_the_one_lock():
    assert re.search(r"^\s+- -r requirements\.lock$", (ROOT / "environment.yml").read_text(), re.M)
    assert (
        'uv" pip sync --quiet --python "$VENV/bin/python" requirements.lock' in (ROOT / "scripts/setup.sh").read_text()
    )
    assert '"requirements.lock"' in (ROOT / "scripts/noxfile.py").read_text()  # the wheel leg installs it with pip


def test_the_supported_pythons_are_the_same_everywhere():
    project = PYPROJECT["project"]
    assert project["requires-python"] == ">=3.10,<3.14"
    assert re.search(r'^PREFERRED="3\.11 3\.12 3\.13 3\.10"', (ROOT / "scripts/setup.sh").read_text(), re.M)
    assert project["scripts"]["gluon-bn"] == "gluon_bn.cli:main"


def _setup(tmp_path, python: str, venv=None):
    env = {**os.environ, "PYTHON": python, "VENV": str(venv or tmp_path / "venv")}
    return subprocess.run(["bash", str(ROOT / "scripts/setup.sh")], capture_output=True, text=True, env=env, timeout=60)


def _fake_python(tmp_path, version: str) -> str:
    fake = tmp_path / f"python{version}"
    fake.write_text(f"#!/bin/sh\necho {version}\n")
    fake.chmod(0o755)
    return str(fake)


def test_setup_refuses_a_python_it_does_not_support_in_one_line(tmp_path):
    done = _setup(tmp_path, _fake_python(tmp_path, "3.9"))
    assert done.returncode == 1 and not (tmp_path / "venv").exists()
    assert (
        "is Python 3.9; gluon-bn runs on 3.10 to 3.13 (MXNet 1.9.1, the last release, has no wheels for "
        "others, and 3.14 is untested); install Python 3.13" in done.stderr.strip().splitlines()[-1]
    )
    done = _setup(tmp_path, str(tmp_path / "no-such-python"))
    assert done.returncode == 1 and "does not run; point it at a Python 3.10 to 3.13" in done.stderr


def test_setup_never_hands_back_another_python_than_the_one_asked_for(tmp_path):
    """A .venv of another Python stays as it is, and setup stops, naming both and the way out."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    asked = "3.13" if sys.version_info[:2] != (3, 13) else "3.12"
    done = _setup(tmp_path, _fake_python(tmp_path, asked), venv)
    have = "%d.%d" % sys.version_info[:2]
    assert done.returncode == 1
    assert f"holds Python {have}, not {asked} from PYTHON=" in done.stderr and f"VENV=.venv-{asked}" in done.stderr


def test_setup_finds_a_python_that_pyenv_has_but_does_not_enable(tmp_path):
    """pyenv's shim of a version it does not enable fails; setup takes that version's own binary instead."""
    shims, root = tmp_path / "shims", tmp_path / "pyenv"
    shims.mkdir()
    asked = "3.13" if sys.version_info[:2] != (3, 13) else "3.12"
    shim = shims / f"python{asked}"
    shim.write_text(f"#!/bin/sh\necho 'pyenv: python{asked}: command not found' >&2; exit 127\n")
    shim.chmod(0o755)
    (root / "versions" / f"{asked}.9" / "bin").mkdir(parents=True)
    (root / "versions" / f"{asked}.9" / "bin" / f"python{asked}").symlink_to(_fake_python(tmp_path, asked))
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}", "PYENV_ROOT": str(root)}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts/setup.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PYTHON": f"python{asked}", "VENV": str(venv)},
    )
    assert done.returncode == 1 and f"not {asked} from PYTHON=python{asked}" in done.stderr, done.stderr


def test_the_wheel_holds_every_module_of_the_package(tmp_path):
    """Built from a clean copy: a ``build/`` folder left in the tree would fill in what the config leaves out."""
    source_copy = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source_copy,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", ".nox", "build", "results", "*.egg-info", "__pycache__", ".hypothesis"
        ),
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(source_copy)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("gluon_bn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packaged = {n for n in names if n.startswith("gluon_bn/") and n.endswith(".py")}
    source = {p.relative_to(ROOT).as_posix() for p in (ROOT / "gluon_bn").rglob("*.py")}
    hook = "gluon_bn/runtime/mxnet_hook.py"  # at the top instead, where the start-up file can import it
    assert len(source) > 30 and packaged == source - {hook}
    assert {"_gluon_bn_mxnet_hook.py", "gluon_bn_mxnet_hook.pth"} <= set(names)


def test_every_path_the_readme_and_the_docs_name_exists():
    """Paths are named from the repository's root in the README and in every docs page; links from the file's
    own folder (a docs page links ``../notebooks/...``)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) > 10
    named = set()
    for page in pages:
        text = page.read_text()
        named |= set(re.findall(r"`((?:gluon_bn|notebooks|benchmarks|tests|scripts|docs|\.ci)/[^` ]*)`", text))
        linked = re.findall(r"\]\(((?:\.\./)*(?:gluon_bn|notebooks|benchmarks|tests|scripts|docs)/[^)#]*)", text)
        named |= {(page.parent / link).resolve().relative_to(ROOT).as_posix() for link in linked}
        # table rows that name siblings: | `gluon_bn/reliability/record.py`, `files.py` |
        siblings = re.findall(r"^\| `(gluon_bn/(?:commands/)?)[a-z_]+\.py`((?:, `[a-z_]+\.py`)+) \|", text, re.M)
        named |= {folder + name for folder, rest in siblings for name in re.findall(r"`([a-z_]+\.py)`", rest)}
    assert len(named) > 40
    assert sorted(p for p in named if not (ROOT / p).exists()) == []


def test_the_readme_using_the_pieces_code_runs_unchanged_in_a_fresh_python_mxnet_first(real_data_dir):
    """The README's code block, as written, in a new interpreter; only its loader is handed a real subset."""
    block = fenced_block("Using the pieces", "python")
    assert block.startswith("import mxnet")
    done = subprocess.run(
        [sys.executable, "-c", ON_A_REAL_SUBSET + block + REPORT_PIECES], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "epochs [1, 2, 3, 4, 5] gamma (1, 6, 1, 1)" in done.stdout
