"""Every option of every command against bad values (a Hypothesis property): each run ends with exit 0, 1
or 2 and a one-line error, never a traceback, and a bad value stops it before training starts.

The commands run in this process with "training starts" made a sentinel: every command's checks end
in ``prepare`` (``launch``'s in the hosts' check), so a run that gets past them raises ``Started``.
"""

import argparse
import contextlib
import io
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gluon_bn import cli
from gluon_bn.commands import bench, compare, exercise, launch, reproduce
from gluon_bn.parallel import supervisor

#: Each command, as a run that is otherwise good (quick presets, a folder of its own for --out).
BASE = {
    "reproduce": ["reproduce", "--quick", "--model", "gluon"],
    "compare": ["compare", "--quick"],
    "exercise": ["exercise", "no-bias", "--quick"],
    "bench": ["bench", "--quick", "--sections", "layers"],
    "launch": ["launch", "--workers", "2"],
}
JOB = ["--", "reproduce", "--quick", "--model", "gluon", "--kvstore", "dist_sync"]

NUMBERS = ["0", "-5", "nan", "inf", "-inf", "", "é", "1e400", "0x10", "--", "3 4"]
BAD = {
    "positive int": [*NUMBERS, "1.5", "99999999999999999999999"],
    "positive float": [*NUMBERS, "1e-400"],
    "int": [*NUMBERS, "1.5", "99999"],  # launch's --workers and --servers: from 1 to 1024
    "float": [*NUMBERS, "1e-400", "5000"],  # launch's --keepalive: from 0.5 to 3600 seconds
    "seed": ["-5", "-1", "4294967296", "99999999999999999999", "1.5", "", "nan", "é"],
    "choice": ["", "nope", "é", "--", "BOTH"],
    "ctx": ["", "gpu:99", "cpu:-1", "tpu", "cpu:0,cpu:0", "cpu:0,gpu:0", "é", "cpu:", ",", "gpu"],
    "out": ["FILE", "FILE/inside", "", "/proc/no"],
    "data_dir": ["FILE", "MISSING", "EMPTY_DIR", "é/nowhere"],
    "hosts": ["MISSING", "EMPTY_DIR", "FILE", "BINARY", "BAD_HOSTS", ""],
    "ssh": ["", "'", '"unclosed'],
    "interface": ["", "has space", "x" * 16, "é", "eth0;rm"],
}
#: Options that take no value, or that are the command line around the others.
NOT_VALUES = {"help", "version", "command", "job", "quick", "hybridize", "resume", "list"}


class Started(Exception):
    """The run got past every check: training (or the job) would start here."""


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Each command's parser. argparse has no public way to list a parser's options: this reads its
    private ``_actions``, here and in ``_options`` only."""
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _options() -> list[tuple[str, str | None, str, argparse.Action]]:
    """(command, option string or None for a positional, kind, action) for every value the CLI takes."""
    found = []
    for command, parser in _parsers().items():
        for action in parser._actions:
            if action.dest in NOT_VALUES or action.nargs == 0:
                continue
            kind = (
                action.dest
                if action.dest in BAD
                else "choice"
                if action.choices
                else getattr(action.type, "__name__", None)
            )
            found.append((command, action.option_strings[-1] if action.option_strings else None, kind, action))
    return found


OPTIONS = _options()


def test_every_option_of_every_command_has_bad_values_to_try():
    assert {command for command, *_ in OPTIONS} == set(BASE)
    unknown = [(command, option, kind) for command, option, kind, _ in OPTIONS if kind not in BAD]
    assert not unknown, f"give these options' kinds bad values in BAD: {unknown}"


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """Paths the values name: a file where a folder is meant, a missing one, an empty folder, bad hosts files."""
    root = tmp_path_factory.mktemp("places")
    (root / "file").write_text("a file, not a folder\n")
    (root / "empty").mkdir()
    (root / "binary").write_bytes(b"\xff\xfe\x00\x81" * 64)
    (root / "bad_hosts").write_text("one host\n")
    return {
        "FILE": root / "file",
        "MISSING": root / "missing",
        "EMPTY_DIR": root / "empty",
        "BINARY": root / "binary",
        "BAD_HOSTS": root / "bad_hosts",
        "OUT": root / "out",
    }


@pytest.fixture(scope="module")
def started(real_data_dir):
    """Training (and a job's start) made the ``Started`` sentinel, in every command module."""
    patch = pytest.MonkeyPatch()

    def gate(real):
        def checked(*args, **kwargs):
            real(*args, **kwargs)
            raise Started()

        return checked

    for module in (reproduce, compare, exercise, bench):
        patch.setattr(module, "prepare", gate(module.prepare))
    patch.setattr(launch, "check_hosts", gate(lambda *a, **k: None))
    patch.setattr(supervisor, "_Process", gate(lambda *a, **k: None))
    patch.setenv("GLUON_BN_DATA", str(real_data_dir))
    yield
    patch.undo()


def _value(text: str, places: dict) -> str:
    for name, path in places.items():
        text = text.replace(name, str(path))
    return text


def _run(argv: list[str]) -> tuple[str, int | None, str]:
    """("started" / "exit", the exit status, stderr) of ``gluon-bn ARGV`` in this process."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            return "exit", cli.main(argv), err.getvalue()
        except SystemExit as exc:  # argparse's own errors, and --help
            return "exit", exc.code, err.getvalue()
        except Started:
            return "started", None, err.getvalue()


def _argv(command: str, option: str | None, value: str, places: dict) -> list[str]:
    """The command's good run with ``option`` set to ``value`` (as ``--option=value``: a value may start with -)."""
    argv = [*BASE[command], "--out", str(places["OUT"] / command)]
    if option is None:  # exercise's NAME
        argv = [command, value, *argv[2:]]
    else:
        argv.append(f"{option}={value}")
    return argv + (JOB if command == "launch" else [])


def _with_hosts(command: str, option: str | None, argv: list[str], places: dict) -> list[str]:
    """launch's host options act only with --hosts: give them a readable hosts file."""
    if command == "launch" and option in ("--ssh", "--interface", "--keepalive") and "--hosts" not in argv:
        hosts = places["OUT"].parent / "hosts"
        hosts.write_text("127.0.0.1\n")
        argv[1:1] = ["--hosts", str(hosts)]
    return argv


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: conftest's profile
@given(data=st.data())
def test_a_bad_value_is_one_line_and_exit_1_or_2_before_any_training(data, places, started):
    command, option, kind, _ = data.draw(st.sampled_from(OPTIONS), label="option")
    value = _value(data.draw(st.sampled_from(BAD[kind]), label="value"), places)
    argv = _with_hosts(command, option, _argv(command, option, value, places), places)
    how, code, err = _run(argv)
    assert "Traceback" not in err, err
    assert how == "exit", f"gluon-bn {' '.join(argv)}: training started with a bad value"
    assert code in (1, 2), (argv, code, err)
    assert err.strip().splitlines()[-1].startswith(("gluon-bn: error: ", f"gluon-bn {command}: error: ")), err


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: conftest's profile
@given(data=st.data())
def test_any_value_ends_in_an_exit_status_or_training_never_a_traceback(data, places, started):
    command, option, kind, _ = data.draw(st.sampled_from(OPTIONS), label="option")
    value = data.draw(
        st.one_of(
            st.text(max_size=12),
            st.integers(-(2**70), 2**70).map(str),
            st.floats(allow_nan=True, allow_infinity=True).map(lambda x: repr(x) if not math.isnan(x) else "nan"),
        ),
        label="value",
    )
    if "\0" in value:
        value = value.replace("\0", "")  # no command line can hold a NUL
    argv = _with_hosts(command, option, _argv(command, option, value, places), places)
    how, code, err = _run(argv)
    assert "Traceback" not in err, err
    assert how == "started" or code in (0, 1, 2), (argv, code, err)


@pytest.mark.parametrize(
    "job",
    [
        [],
        ["--"],
        ["--", "compare"],
        ["--", "reproduce", "--model", "gluon"],
        ["--", "reproduce", "--model", "gluon", "--kvstore", "dist_sync", "--seed", "-5"],
        ["--", "reproduce", "--model", "gluon", "--kvstore", "dist_sync", "--lr", "nan"],
        ["--", "reproduce", "--kvstore", "dist_sync"],  # both models: a job trains one
    ],
)
def test_a_bad_workers_command_stops_the_launch_before_any_node_starts(job, places, started):
    how, code, err = _run(["launch", "--workers", "2", *job])
    assert how == "exit" and code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(("gluon-bn: error: ", "gluon-bn reproduce: error: ")), err
