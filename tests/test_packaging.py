"""Pins per Python, environment.yml in step, the overrides, setup.sh's choice of Python, and a wheel with every module."""
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

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PYTHONS = ("3.10", "3.11", "3.12", "3.13")


def _pins(requirements, python: str) -> dict[str, str]:
    """Exact pins that apply on ``python``: every requirement is ``name==version``, maybe with a marker."""
    pins = {}
    for text in requirements:
        req = Requirement(text)
        if req.marker and not req.marker.evaluate({"python_version": python}):
            continue
        (spec,) = req.specifier
        assert spec.operator == "==" or req.name == "setuptools", f"not an exact pin: {text!r}"
        pins[req.name.lower()] = spec.version
    return pins


def test_environment_yml_matches_pyproject_for_its_python():
    project = PYPROJECT["project"]
    wanted = _pins(project["dependencies"] + project["optional-dependencies"]["test"], "3.11")
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s+- python=3\.11$", text, re.M)
    env_lines = re.findall(r"^\s+- ([A-Za-z0-9_.-]+==\S+)$", text, re.M)
    assert _pins(env_lines, "3.11") == wanted
    assert re.search(r"^\s+- -e \.$", text, re.M)


@pytest.mark.parametrize("python, numpy", [("3.10", "1.23.5"), ("3.11", "1.23.5"), ("3.12", "1.26.4"),
                                           ("3.13", "2.5.5")])
def test_each_python_gets_the_numpy_that_has_wheels_for_it(python, numpy):
    project = PYPROJECT["project"]
    pins = _pins(project["dependencies"], python)
    assert pins["mxnet"] == "1.9.1" and pins["d2l"] == "1.0.3" and pins["numpy"] == numpy
    assert ("setuptools" in pins) == (python >= "3.12")  # MXNet imports distutils
    overrides = _pins(PYPROJECT["tool"]["uv"]["override-dependencies"], python)
    assert {k: v for k, v in pins.items() if k in overrides} == {k: overrides[k] for k in pins if k in overrides}
    assert {"numpy", "matplotlib", "pandas", "scipy"} <= set(overrides)  # d2l's and MXNet's stale pins, replaced


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
    assert done.stderr.strip().endswith("is Python 3.9; gluon-bn runs on 3.10 to 3.13 (MXNet 1.9.1's last release "
                                        "has no support for others)")
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
    done = subprocess.run(["bash", str(ROOT / "scripts/setup.sh")], capture_output=True, text=True, timeout=60,
                          env={**env, "PYTHON": f"python{asked}", "VENV": str(venv)})
    assert done.returncode == 1 and f"not {asked} from PYTHON=python{asked}" in done.stderr, done.stderr


def test_the_wheel_holds_every_module_of_the_package(tmp_path):
    """Built from a clean copy: a ``build/`` folder left in the tree would fill in what the config leaves out."""
    source_copy = tmp_path / "src"
    shutil.copytree(ROOT, source_copy, ignore=shutil.ignore_patterns(".git", ".venv*", ".nox", "build", "results",
                                                                       "*.egg-info", "__pycache__", ".hypothesis"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path),
                           str(source_copy)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("gluon_bn-*.whl")
    packaged = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("gluon_bn/") and n.endswith(".py")}
    source = {p.relative_to(ROOT).as_posix() for p in (ROOT / "gluon_bn").rglob("*.py")}
    assert len(source) > 30 and packaged == source


def test_every_path_the_readme_names_exists():
    text = (ROOT / "README.md").read_text()
    named = set(re.findall(r"`((?:gluon_bn|notebooks|benchmarks|tests|scripts|\.ci)/[^` ]*)`", text))
    named |= set(re.findall(r"\]\(((?:gluon_bn|notebooks|benchmarks|tests|scripts)/[^)]*)\)", text))
    # table rows that name siblings: | `gluon_bn/reliability/record.py`, `files.py` |
    siblings = re.findall(r"^\| `(gluon_bn/(?:commands/)?)[a-z_]+\.py`((?:, `[a-z_]+\.py`)+) \|", text, re.M)
    named |= {folder + name for folder, rest in siblings for name in re.findall(r"`([a-z_]+\.py)`", rest)}
    assert len(named) > 20
    assert sorted(p for p in named if not (ROOT / p).exists()) == []


def test_the_readme_using_the_pieces_code_runs_unchanged(real_data_dir, monkeypatch):
    """The README's code block, as written, on a real subset (the loader is given num_train/num_test here)."""
    import functools

    import gluon_bn

    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Using the pieces"):]
    start = section.index("```python\n") + len("```python\n")
    code = section[start:section.index("\n```", start)]
    monkeypatch.setattr(gluon_bn, "load_data_fashion_mnist",
                        functools.partial(gluon_bn.load_data_fashion_mnist, num_train=1024, num_test=512))
    namespace: dict = {}
    exec(compile(code, "README.md: Using the pieces", "exec"), namespace)
    assert [e.epoch for e in namespace["history"]] == [1, 2, 3, 4, 5]
    assert namespace["net"][1].gamma.data().shape == (1, 6, 1, 1)
