"""The platform matrix: every supported Python besides the default, set up by scripts/setup.sh as a user
would, holding the default Python's numbers to the last digit, and passing the fast unit tests.

    .venv/bin/nox -f scripts/noxfile.py                 # all of them (CI runs this after the full suite)
    .venv/bin/nox -f scripts/noxfile.py -s "platform(version='3.13')"
"""
import shutil
import subprocess
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parents[1]
OTHERS = ("3.10", "3.12", "3.13")
UNIT_TESTS = ("tests/test_layers.py", "tests/test_comparison.py", "tests/test_data.py", "tests/test_cli.py",
              "tests/test_compat.py")
QUICK = ("reproduce", "--quick", "--ctx", "cpu")
REFERENCE = ROOT / "results" / "platforms" / "default"

nox.options.sessions = ["reference", "platform", "wheel"]
nox.options.error_on_missing_interpreters = True


@nox.session(venv_backend="none")
def reference(session: nox.Session) -> None:
    """The default environment's quick numbers, which every other Python must repeat."""
    session.chdir(ROOT)
    session.run(".venv/bin/gluon-bn", *QUICK, "--out", str(REFERENCE), external=True)


@nox.session(venv_backend="none")
@nox.parametrize("version", OTHERS)
def platform(session: nox.Session, version: str) -> None:
    """Set up Python ``version`` from nothing, reproduce the quick run, compare it, run the unit tests."""
    session.chdir(ROOT)
    venv = f".venv-{version}"
    session.run("./scripts/setup.sh", env={"PYTHON": f"python{version}", "VENV": venv}, external=True)
    out = ROOT / "results" / "platforms" / version
    session.run(f"{venv}/bin/gluon-bn", *QUICK, "--out", str(out), external=True)
    session.run(f"{venv}/bin/python", "scripts/same_numbers.py", str(REFERENCE / "reproduce.json"),
                str(out / "reproduce.json"), external=True)
    session.run(f"{venv}/bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *UNIT_TESTS, external=True)


@nox.session(venv_backend="none")
def wheel(session: nox.Session) -> None:
    """A wheel built from the repository, installed with plain pip into a new venv, repeats the numbers."""
    session.chdir(ROOT)
    tmp = Path(session.create_tmp())
    shutil.rmtree(tmp / "wheel", ignore_errors=True)
    session.run(".venv/bin/python", "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp / "wheel"), ".",
                external=True)
    (built,) = (tmp / "wheel").glob("gluon_bn-*.whl")
    venv = tmp / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    session.run(".venv/bin/python", "-m", "venv", str(venv), external=True)
    session.run(str(venv / "bin/python"), "-m", "pip", "install", "--quiet", str(built), external=True)
    out = ROOT / "results" / "platforms" / "wheel"
    session.run(str(venv / "bin/gluon-bn"), *QUICK, "--out", str(out), external=True)
    session.run(str(venv / "bin/python"), "scripts/same_numbers.py", str(REFERENCE / "reproduce.json"),
                str(out / "reproduce.json"), external=True)
