"""The platform matrix: every supported Python besides the default, set up by scripts/setup.sh as a user
would; the newest versions that pyproject.toml's ranges allow; a wheel over the lock with plain pip; each
holding the default Python's numbers to the last digit. And Colab's runtime, emulated (tests/test_colab.py).

    .venv/bin/nox -f scripts/noxfile.py                 # all of them (CI runs this after the full suite)
    .venv/bin/nox -f scripts/noxfile.py -s "platform(version='3.13')"
"""

import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parents[1]
OTHERS = ("3.10", "3.12", "3.13")
UNIT_TESTS = (
    "tests/test_layers.py",
    "tests/test_comparison.py",
    "tests/test_data.py",
    "tests/test_cli.py",
    "tests/test_compat.py",
    "tests/test_mxnet_hook.py",
    "tests/test_gpus.py",
)
NEWEST_PYTHON = "3.13"
QUICK = ("reproduce", "--quick", "--ctx", "cpu")
REFERENCE = ROOT / "results" / "platforms" / "default"

nox.options.sessions = ["reference", "platform", "newest", "wheel", "colab"]
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
    _same_numbers_and_unit_tests(session, Path(venv), version)


def _same_numbers_and_unit_tests(session: nox.Session, venv: Path, name: str, tests=UNIT_TESTS) -> None:
    """The quick reproduce in ``venv``, compared digit for digit with the default's, then ``tests``."""
    out = ROOT / "results" / "platforms" / name
    python = str(venv / "bin/python")
    session.run(str(venv / "bin/gluon-bn"), *QUICK, "--out", str(out), external=True)
    session.run(
        python, "scripts/same_numbers.py", str(REFERENCE / "reproduce.json"), str(out / "reproduce.json"), external=True
    )
    session.run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests, external=True)


@nox.session(venv_backend="none")
def newest(session: nox.Session) -> None:
    """The newest versions that pyproject.toml's ranges (and its [tool.uv] overrides) allow, on the newest Python."""
    session.chdir(ROOT)
    venv = ".venv-newest"
    session.run(
        "./scripts/setup.sh", env={"PYTHON": f"python{NEWEST_PYTHON}", "VENV": venv, "NEWEST": "1"}, external=True
    )
    venv = ROOT / venv
    session.run(
        str(venv / "bin/python"),
        "-c",
        "import numpy, matplotlib, mxnet; print('newest: NumPy',"
        " numpy.__version__, 'matplotlib', matplotlib.__version__, 'MXNet', mxnet.__version__)",
        external=True,
    )
    _same_numbers_and_unit_tests(session, venv, "newest")


@nox.session(venv_backend="none")
def wheel(session: nox.Session) -> None:
    """A wheel built from the repository, installed with plain pip over the lock (as environment.yml does) into a
    new venv, repeats the numbers."""
    session.chdir(ROOT)
    tmp = Path(session.create_tmp())
    shutil.rmtree(tmp / "wheel", ignore_errors=True)
    session.run(
        ".venv/bin/python", "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp / "wheel"), ".", external=True
    )
    (built,) = (tmp / "wheel").glob("gluon_bn-*.whl")
    venv = tmp / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    session.run(".venv/bin/python", "-m", "venv", str(venv), external=True)
    session.run(str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "-r", "requirements.lock", external=True)
    session.run(str(venv / "bin/python"), "-m", "pip", "install", "--quiet", str(built), external=True)
    _same_numbers_and_unit_tests(session, venv, "wheel", tests=["tests/test_mxnet_hook.py"])  # the hook, via pip


@nox.session(venv_backend="none")
def colab(session: nox.Session) -> None:
    """Colab's current runtime, emulated: the README's Colab block, the notebooks with no restart, a d2l reader."""
    session.chdir(ROOT)
    session.run(
        ".venv/bin/python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        "colab",
        "tests/test_colab.py",
        external=True,
    )
