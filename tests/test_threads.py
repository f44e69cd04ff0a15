"""MXNet's CPU threads: set up before MXNet loads, on every path, and read where operators run."""

import ctypes
import json
import os
import subprocess
import sys

import pytest

from gluon_bn.errors import UsageError
from gluon_bn.runs.prepare import prepare
from gluon_bn.runs.settings import TrainConfig
from gluon_bn.runtime import compat, threads


def _python(code: str, **env_changes) -> dict:
    """Run ``code`` in a fresh interpreter with $OMP_NUM_THREADS as given (None: unset); it prints JSON."""
    env = {k: v for k, v in os.environ.items() if k != threads.ENV}
    env.update({k: v for k, v in env_changes.items() if v is not None})
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "stderr": done.stderr}


SETUP = "import json, gluon_bn; from gluon_bn.runtime import threads; print(json.dumps(threads.setup()))"


def test_import_gluon_bn_gives_mxnet_one_thread_per_logical_cpu():
    got = _python(SETUP, MXNET_MKLDNN_ENABLED="1")
    assert got["operator_threads"] == got["logical_cpus"] == threads.logical_cpus()
    assert got["OMP_NUM_THREADS"] == str(threads.logical_cpus()) and got["chosen_by"].startswith("gluon-bn")


def test_with_onednn_off_the_default_is_one_thread():
    got = _python(SETUP, MXNET_MKLDNN_ENABLED="0", MXNET_STORAGE_FALLBACK_LOG_VERBOSE="0")
    assert got["operator_threads"] == 1 and "oneDNN is off" in got["chosen_by"]


def test_several_cpus_with_onednn_off_and_more_threads_are_refused_not_hung(tmp_path, gluon_bn_cli):
    env = {**os.environ, "MXNET_MKLDNN_ENABLED": "0", "MXNET_STORAGE_FALLBACK_LOG_VERBOSE": "0", threads.ENV: "2"}
    result = gluon_bn_cli("reproduce", "--ctx", "cpu:0,cpu:1", "--out", str(tmp_path), env=env)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "MXNET_MKLDNN_ENABLED=0 and 2 operator threads can hang MXNet 1.9.1" in result.stderr
    assert "use --threads 1" in result.stderr


def test_omp_num_threads_in_the_environment_wins():
    got = _python(SETUP, OMP_NUM_THREADS="1")
    assert got["operator_threads"] == 1 and got["chosen_by"] == "$OMP_NUM_THREADS in the environment"


def test_mxnet_imported_first_keeps_its_default_and_says_how_to_fix_it():
    """As a program that needs MXNet's own set-up does it: NumPy's names first (compat alone), then MXNet."""
    got = _python(f"{compat.BEFORE_MXNET}\nimport mxnet\n" + SETUP)
    assert got["chosen_by"].startswith("MXNet's default") and got["OMP_NUM_THREADS"] is None
    assert "import gluon_bn first, or set OMP_NUM_THREADS=" in got["stderr"]
    if threads.logical_cpus() == 2 and os.uname().machine == "x86_64":  # MXNet halves the CPUs on x86
        assert got["operator_threads"] == 1


def test_operator_threads_are_read_in_mxnets_engine_not_in_the_caller():
    """MXSetNumOMPThreads changes only the calling thread: what operators use stays as MXNet loaded it.

    It also fails loudly if MXNet renames ``_LIB`` or ``MXSetNumOMPThreads``, which the Python thread's fix needs.
    """
    before = threads.operator_threads()
    openmp = ctypes.CDLL("libgomp.so.1")
    caller = openmp.omp_get_max_threads()
    try:
        threads._set_calling_thread_openmp(before + 3)
        assert openmp.omp_get_max_threads() == threads.python_thread_threads() == before + 3  # the caller's moved...
        assert threads.operator_threads() == before  # ...the engine's did not
    finally:
        threads._set_calling_thread_openmp(caller)


# A fresh interpreter makes batch-sized NDArrays from NumPy on a Python thread, and counts the process's threads
# on that thread before and after. MXNet copies 200,000 elements or more with an OpenMP loop on the calling
# thread; a second OpenMP team there stays in libgomp's pool while that thread lives, so it shows as threads that
# were not there before.
TEAM = """
import json, os, threading
import numpy as np
import gluon_bn
from mxnet import nd
from gluon_bn.runtime import compat, threads
from gluon_bn.chapter.data import ArrayLoader
from gluon_bn.chapter.fashion_mnist import read_fashion_mnist
data = read_fashion_mnist({data_dir!r})
images, labels = data.train_images[:1024], data.train_labels[:1024]
(nd.ones((256, 6, 24, 24)) * 2).wait_to_read()  # operators have run: the operator threads' team exists
seen = {{}}
def copies():
    {undo}
    seen["before"] = len(os.listdir("/proc/self/task"))
    {copy}
    nd.waitall()
    seen["after"] = len(os.listdir("/proc/self/task"))
    seen["python_thread"] = threads.python_thread_threads()
{where}
print(json.dumps({{**seen, "operator_threads": threads.operator_threads()}}))
"""
USER_COPIES = "[nd.array(images[i:i + 256][:, None] / 255.0, dtype=np.float32) for i in range(0, 1024, 256)]"
LOADER_COPIES = "[X.wait_to_read() for X, y in ArrayLoader(images, labels, 256)]"
ON_MAIN = "copies()"
ON_ANOTHER = "worker = threading.Thread(target=copies); worker.start(); worker.join()"


def _team(real_data_dir, copy: str, where: str, undo: str = "pass") -> dict:
    return _python(TEAM.format(data_dir=str(real_data_dir), copy=copy, where=where, undo=undo))


def test_after_import_gluon_bn_the_python_threads_copies_start_no_openmp_team(real_data_dir):
    got = _team(real_data_dir, USER_COPIES, ON_MAIN)
    assert got["after"] == got["before"] and got["python_thread"] == 1
    assert got["operator_threads"] == (threads.logical_cpus() if threads.onednn() else 1)  # the child's own default


def test_the_loader_keeps_any_thread_it_runs_on_from_starting_a_team(real_data_dir):
    """A batch loop on a thread other than the one that imported gluon_bn (a notebook kernel may do that)."""
    got = _team(real_data_dir, LOADER_COPIES, ON_ANOTHER)
    assert got["after"] == got["before"] and got["python_thread"] == 1


def test_the_team_that_the_fix_prevents_is_there_without_it(real_data_dir):
    """The control: with the calling thread's OpenMP threads back at 2, the same copies leave a thread behind."""
    got = _team(real_data_dir, USER_COPIES, ON_MAIN, undo="threads._set_calling_thread_openmp(2)")
    assert got["python_thread"] == 2 and got["after"] == got["before"] + 1


def test_under_the_naive_engine_the_python_thread_keeps_its_threads():
    """NaiveEngine runs every operator on the calling thread: one thread there would be one for everything."""
    got = _python(
        "import json, gluon_bn; from gluon_bn.runtime import threads; print(json.dumps(threads.setup()))",
        MXNET_ENGINE_TYPE="NaiveEngine",
        OMP_NUM_THREADS="2",
    )
    assert got["python_thread"] == 2


def test_the_test_suite_runs_with_the_set_up_it_reports():
    assert threads.operator_threads() == int(os.environ[threads.ENV])


@pytest.mark.slow
@pytest.mark.parametrize("given", [None, 1])
def test_cli_threads_mean_operator_threads_and_the_record_says_so(given, tmp_path, gluon_bn_cli, real_data_dir):
    args = ["reproduce", "--model", "gluon", "--quick", "--ctx", "cpu", "--out", str(tmp_path)]
    result = gluon_bn_cli(
        *args,
        *(["--threads", str(given)] if given else []),
        env={**{k: v for k, v in os.environ.items() if k != threads.ENV}, "MXNET_MKLDNN_ENABLED": "1"},
    )
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "reproduce.json").read_text())
    setup = record["environment"]["threads"]
    assert setup["operator_threads"] == (given or threads.logical_cpus()) and setup["python_thread"] == 1
    assert setup["OMP_NUM_THREADS"] == str(given or threads.logical_cpus())
    assert record["config"]["threads"] == given and record["environment"]["cpu"]


def test_a_library_run_asking_for_other_threads_than_mxnet_has_is_refused(tmp_path, real_data_dir):
    other = threads.operator_threads() + 1
    with pytest.raises(
        UsageError, match=f"threads {other}: MXNet's CPU operators run with .* set OMP_NUM_THREADS={other}"
    ):
        prepare(TrainConfig(quick=True, ctx="cpu", threads=other, out=str(tmp_path)), log=lambda s: None)


CONV = (
    "import json, gluon_bn; from mxnet import nd; from mxnet.gluon import nn; net = nn.Conv2D(6, 5); "
    "net.initialize(); net(nd.ones((2, 1, 28, 28))).wait_to_read(); print(json.dumps({}))"
)


@pytest.mark.parametrize("verbose, logged", [(None, False), ("1", True)])
def test_with_onednn_off_mxnet_logs_no_fallback_per_operator_unless_asked(verbose, logged):
    """MXNet 1.9.1 with oneDNN off warns for each operator; gluon-bn turns that off, and the user's "1" wins."""
    env = {k: v for k, v in os.environ.items() if k != threads.FALLBACK_LOG_ENV}
    env.update(MXNET_MKLDNN_ENABLED="0", **({threads.FALLBACK_LOG_ENV: verbose} if verbose else {}))
    done = subprocess.run([sys.executable, "-c", CONV], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ("Storage type fallback detected" in done.stderr) is logged, done.stderr
