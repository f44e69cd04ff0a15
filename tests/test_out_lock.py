"""One run at a time per --out: a second run into a held folder stops before training with one line naming the
holder and exit 2, while the holder finishes its record; a holder killed with kill -9 does not block the next
run; the lock module on its own (refused twice, released by the ``with``, shared with the holder's children)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime

import fault_hook
import pytest
from jobs import alive, job_env, launch_argv, launch_until, pids

from gluon_bn.errors import UsageError
from gluon_bn.reliability import faults
from gluon_bn.reliability.out_lock import HANDED_ON_ENV, LOCK_NAME, holding_out

QUICK = ("reproduce", "--quick", "--ctx", "cpu")
FIX = "wait for it to finish, or choose another --out"


def _env():
    """This environment without a fault or a folder handed on by a holder."""
    return {k: v for k, v in os.environ.items() if k not in (fault_hook.ENV, faults.HOOK_ENV, HANDED_ON_ENV)}


def _holder(out):
    """What the lock file in ``out`` says about its holder, or None while there is none to read."""
    try:
        return json.loads((out / LOCK_NAME).read_text())
    except (FileNotFoundError, ValueError):
        return None


@pytest.fixture
def start_holding(tmp_path, real_data_dir):
    """``start_holding(out, *args)``: a ``gluon-bn reproduce --quick`` child once it holds ``out``; killed after."""
    children = []

    def start(out, *args):
        log = tmp_path / f"holder-{len(children)}"
        with open(f"{log}.out", "w") as stdout, open(f"{log}.err", "w") as stderr:
            child = subprocess.Popen(
                [sys.executable, "-m", "gluon_bn", *QUICK, "--data-dir", str(real_data_dir), *args, "--out", str(out)],
                stdout=stdout,
                stderr=stderr,
                env=_env(),
            )
        child.log_err = f"{log}.err"
        children.append(child)
        deadline = time.monotonic() + 180
        while (_holder(out) or {}).get("pid") != child.pid:
            if child.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the run never held {out} (exit {child.poll()}): {open(child.log_err).read()[-2000:]}")
            time.sleep(0.05)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGCONT)
            child.kill()
        child.wait()


@pytest.mark.slow
def test_a_second_run_into_a_held_out_stops_in_one_line_and_the_first_finishes(
    start_holding, tmp_path, real_data_dir, gluon_bn_cli
):
    out = tmp_path / "out"
    first = start_holding(out, "--seed", "1")
    first.send_signal(signal.SIGSTOP)  # held, not finishing, however long the second takes to start on a busy machine
    try:
        second = gluon_bn_cli(*QUICK, "--data-dir", str(real_data_dir), "--seed", "2", "--out", str(out), env=_env())
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert re.fullmatch(
        rf"gluon-bn: error: --out {re.escape(str(out))} is in use by another gluon-bn run "
        rf"\(pid {first.pid}, started \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d: gluon-bn reproduce "
        rf".*--seed 1 --out {re.escape(str(out))}\); {FIX}",
        lines[0],
    ), lines[0]
    assert "training on" not in second.stdout and "Fashion-MNIST" not in second.stdout  # stopped before anything
    assert first.wait(timeout=300) == 0, open(first.log_err).read()[-2000:]
    record = json.loads((out / "reproduce.json").read_text())
    assert record["complete"] is True and record["config"]["seed"] == 1
    assert not (out / LOCK_NAME).exists()


@pytest.mark.slow
def test_a_holder_killed_with_sigkill_does_not_block_the_next_run(start_holding, tmp_path, real_data_dir, gluon_bn_cli):
    out = tmp_path / "out"
    killed = start_holding(out, "--seed", "1")
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=30) == -signal.SIGKILL
    assert _holder(out)["pid"] == killed.pid  # its lock file is still there, naming the dead run
    nxt = gluon_bn_cli(
        *QUICK, "--data-dir", str(real_data_dir), "--model", "gluon", "--seed", "2", "--out", str(out), env=_env()
    )
    assert nxt.returncode == 0, nxt.stderr
    record = json.loads((out / "reproduce.json").read_text())
    assert record["complete"] is True and record["config"]["seed"] == 2
    assert not (out / LOCK_NAME).exists()


@pytest.mark.slow
def test_a_launch_holds_its_workers_out_for_them(tmp_path, real_data_dir, gluon_bn_cli):
    """The workers write into the launcher's --out under its lock, and finish the job; another run is refused."""
    out = tmp_path / "out"
    argv = launch_argv(
        "--kvstore",
        "dist_sync",
        "--model",
        "gluon",
        "--epochs",
        "2",
        "--num-train",
        "1024",
        "--num-test",
        "256",
        "--data-dir",
        str(real_data_dir),
        "--out",
        str(out),
        launch=["--workers", "2"],
    )
    launcher, lines = launch_until(argv, "[worker 0] kvstore dist_sync", job_env())
    launcher.send_signal(signal.SIGSTOP)  # the job goes on; the launcher, which holds the lock, cannot end meanwhile
    try:
        other = gluon_bn_cli(*QUICK, "--out", str(out), env=_env())
    finally:
        launcher.send_signal(signal.SIGCONT)
        rest, _ = launcher.communicate(timeout=300)
    assert other.returncode == 2 and f"in use by another gluon-bn run (pid {launcher.pid}, " in other.stderr
    assert ": gluon-bn launch --workers 2 -- reproduce --kvstore" in other.stderr, other.stderr
    assert launcher.returncode == 0, rest[-3000:]
    assert json.loads((out / "reproduce.json").read_text())["complete"] is True
    assert not [p for p in pids("".join(lines) + rest) if alive(p)] and not (out / LOCK_NAME).exists()


# -- the lock module -----------------------------------------------------------------------------


def test_the_lock_file_names_its_holder_while_held_and_is_gone_after(tmp_path):
    with holding_out(tmp_path, ["gluon-bn", "reproduce", "--out", str(tmp_path)]) as held:
        holder = _holder(tmp_path)
        assert held == tmp_path
        assert holder["pid"] == os.getpid() and holder["command"] == ["gluon-bn", "reproduce", "--out", str(tmp_path)]
        assert abs(datetime.fromisoformat(holder["started"]).timestamp() - time.time()) < 60
    assert list(tmp_path.iterdir()) == []


def test_held_twice_in_one_process_is_refused_with_the_holder_and_the_fix(tmp_path):
    with holding_out(tmp_path, ["gluon-bn", "bench"]):
        with pytest.raises(UsageError) as err:
            with holding_out(tmp_path, ["gluon-bn", "compare"]):
                pytest.fail("held twice")
        assert err.value.exit_code == 2
        assert re.fullmatch(
            rf"--out {re.escape(str(tmp_path))} is in use by another gluon-bn run \(pid {os.getpid()}, "
            rf"started [-\d]{{10}} [:\d]{{8}}: gluon-bn bench\); {FIX}",
            str(err.value),
        ), str(err.value)
        assert _holder(tmp_path)["command"] == ["gluon-bn", "bench"]  # the refused run changed nothing


def test_released_on_leaving_the_with_also_by_an_exception(tmp_path):
    with pytest.raises(RuntimeError):
        with holding_out(tmp_path, ["first"]):
            raise RuntimeError("a run that failed")
    with holding_out(tmp_path, ["second"]):
        assert _holder(tmp_path)["command"] == ["second"]
    assert not (tmp_path / LOCK_NAME).exists() and HANDED_ON_ENV not in os.environ


def test_a_lock_file_left_by_a_dead_holder_does_not_block(tmp_path):
    (tmp_path / LOCK_NAME).write_text(
        json.dumps(
            {"pid": 999999, "host": "h", "started": "2020-01-01T00:00:00+00:00", "command": ["gluon-bn", "reproduce"]}
        )
    )
    with holding_out(tmp_path, ["gluon-bn", "exercise"]):
        assert _holder(tmp_path)["pid"] == os.getpid()


_TRY = (
    "import sys; from gluon_bn.reliability.out_lock import holding_out\n"
    "from gluon_bn.errors import UsageError\n"
    "try:\n    with holding_out(sys.argv[1], ['child']): print('held')\n"
    "except UsageError as exc: print(exc)\n"
)


def test_a_child_started_by_the_holder_shares_it_and_others_are_refused(tmp_path):
    """How a launch's workers write into the launcher's --out: the holder hands the folder on to its children."""
    with holding_out(tmp_path, ["gluon-bn", "launch"]):
        child = subprocess.run([sys.executable, "-c", _TRY, str(tmp_path)], capture_output=True, text=True)
        other = subprocess.run([sys.executable, "-c", _TRY, str(tmp_path)], capture_output=True, text=True, env=_env())
        elsewhere = subprocess.run([sys.executable, "-c", _TRY, str(tmp_path / "sub")], capture_output=True, text=True)
    assert child.stdout == "held\n", child.stderr
    assert other.stdout.startswith(f"--out {tmp_path} is in use by another gluon-bn run (pid {os.getpid()},")
    assert elsewhere.stdout == "held\n", elsewhere.stderr  # another folder is not handed on, and is free


def test_an_unwritable_out_is_one_usage_error_and_a_folder_it_made_is_removed(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match=r"--out .*/file/out: cannot write there \(Not a directory\)"):
        with holding_out(tmp_path / "file" / "out", ["gluon-bn"]):
            pass
    with holding_out(tmp_path / "new", ["gluon-bn"]):  # a run refused before writing anything leaves no folder
        assert (tmp_path / "new").is_dir()
    assert not (tmp_path / "new").exists()
