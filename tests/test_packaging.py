"""environment.yml and pyproject.toml pin the same versions; the package metadata is sound."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;]+)$")


def _pins(requirements):
    pins = {}
    for req in requirements:
        match = PIN.match(req.strip())
        assert match, f"not an exact pin: {req!r}"
        pins[match.group(1).lower()] = match.group(2)
    return pins


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _pins(project["dependencies"] + project["optional-dependencies"]["test"])
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s+- python=3\.11$", text, re.M)
    env_lines = re.findall(r"^\s+- ([A-Za-z0-9_.-]+==\S+)$", text, re.M)
    assert _pins(env_lines) == wanted
    assert re.search(r"^\s+- -e \.$", text, re.M)


def test_python_and_core_pins_are_the_ones_that_work_together():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins(project["dependencies"])
    assert pins["mxnet"] == "1.9.1" and pins["numpy"] == "1.23.5" and pins["d2l"] == "1.0.3"
    assert project["requires-python"] == ">=3.11,<3.12"
    assert project["scripts"]["gluon-bn"] == "gluon_bn.cli:main"


def test_every_path_the_readme_names_exists():
    text = (ROOT / "README.md").read_text()
    named = set(re.findall(r"`((?:gluon_bn|notebooks|benchmarks|tests|scripts|\.ci)/[^` ]*)`", text))
    named |= set(re.findall(r"\]\(((?:gluon_bn|notebooks|benchmarks|tests|scripts)/[^)]*)\)", text))
    # table rows that name siblings: | `gluon_bn/record.py`, `files.py` |
    siblings = re.findall(r"^\| `(gluon_bn/(?:commands/)?)[a-z_]+\.py`((?:, `[a-z_]+\.py`)+) \|", text, re.M)
    named |= {folder + name for folder, rest in siblings for name in re.findall(r"`([a-z_]+\.py)`", rest)}
    assert len(named) > 20
    assert sorted(p for p in named if not (ROOT / p).exists()) == []
