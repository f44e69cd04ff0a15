"""The fault injection is a test hook only: a run that a test has not armed never reaches a fault, even with
$GLUON_BN_FAULT set; an armed child is stopped exactly where the fault names."""

import os
import signal
import subprocess
import sys

from fault_hook import ENV, fault_env

from gluon_bn.reliability import faults

REACH = (
    "from gluon_bn.reliability import faults\n"
    "faults.reached('batch', model='gluon', epoch=1, batch=1)\n"
    "faults.reached('batch', model='gluon', epoch=1, batch=2)\n"
    "print('alive')\n"
)
FAULT = "kill@batch:model=gluon,epoch=1,batch=2"


def _child(env):
    return subprocess.run([sys.executable, "-c", REACH], capture_output=True, text=True, timeout=120, env=env)


def test_an_unarmed_run_ignores_the_fault_variable():
    env = {k: v for k, v in os.environ.items() if k != faults.HOOK_ENV}
    result = _child({**env, ENV: FAULT})
    assert result.returncode == 0 and result.stdout == "alive\n", result.stderr


def test_an_armed_child_is_killed_at_the_named_batch():
    result = _child(fault_env(os.environ, FAULT))
    assert result.returncode == -signal.SIGKILL and result.stdout == ""


def test_fault_env_arms_nothing_without_a_fault():
    env = fault_env({**os.environ, ENV: FAULT, faults.HOOK_ENV: "/elsewhere.py"}, None)
    assert ENV not in env and faults.HOOK_ENV not in env
