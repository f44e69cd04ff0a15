"""What the launch tests share: a job's environment, its record's numbers, and its processes."""

import json
import os
import re
import subprocess
import sys
import threading

from fault_hook import fault_env

from gluon_bn.runtime import threads


def job_env(fault=None, **changes):
    """This environment, as a shell would hand it on: $OMP_NUM_THREADS only when it was given, not set by gluon-bn."""
    env = {k: v for k, v in os.environ.items() if k != threads.ENV or threads.given_by_user()}
    return {**fault_env(env, fault), **changes}


def launch_argv(*job, launch=()):
    """``gluon-bn launch`` with the launcher's options ``launch``, each worker running ``reproduce`` ``job``."""
    return [sys.executable, "-m", "gluon_bn", "launch", *launch, "--", "reproduce", *job]


def history(out, model):
    """A model's per-epoch numbers from the record, without the wall times."""
    record = json.loads((out / "reproduce.json").read_text())
    return [{k: v for k, v in e.items() if k != "time"} for e in record["results"][model]["history"]]


def pids(text):
    """The pids the launcher said it started."""
    return [int(p) for p in re.findall(r"started, pid (\d+)", text)]


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not running
        return stat.read().split()[2] != "Z"


def launch_until(argv, until: str, env, timeout: float = 120):
    """A running launcher, and its output up to the first line that starts with ``until``; one that
    does not get there within ``timeout`` seconds is killed, and the test fails with what it said."""
    launcher = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    watchdog = threading.Timer(timeout, launcher.kill)
    watchdog.start()
    lines = []
    try:
        for line in launcher.stdout:
            lines.append(line)
            if line.startswith(until):
                return launcher, lines
    finally:
        watchdog.cancel()
    raise AssertionError(f"the job ended before {until!r}:\n" + "".join(lines)[-3000:])
