"""The fault injection the interruption tests arm: a kill -9, a Ctrl-C or a full disk at a named point.

The tests need a run to die, or be interrupted, at an exact place (before the first checkpoint,
mid-epoch in the second model, half-way through writing a checkpoint or the record) rather than
after a sleep that lands wherever the machine's speed puts it. gluon_bn calls
``faults.reached(point, **where)`` at those places (``gluon_bn/reliability/faults.py``), which does
nothing until a test arms it: importing this module arms it in the test's process, and
``fault_env`` arms it in a child process (``$GLUON_BN_TEST_HOOK`` names this file). What happens
then is chosen by ``$GLUON_BN_FAULT``, as ``ACTION@POINT[:key=value,...]``, for example::

    GLUON_BN_FAULT="kill@batch:model=gluon,epoch=2,batch=3"
    GLUON_BN_FAULT="interrupt@batch:model=scratch,epoch=2,batch=2"
    GLUON_BN_FAULT="kill@checkpoint:model=scratch,number=2"
    GLUON_BN_FAULT="kill@write:file=reproduce.json,n=1"
    GLUON_BN_FAULT="fill@checkpoint:model=gluon,number=2"   # with GLUON_BN_FAULT_BALLAST=/small/fs/ballast
    GLUON_BN_FAULT="fill@open:file=reproduce.json,n=2"

``n`` picks the n-th arrival that matches the other keys (default: the first). ``fill`` fills the
filesystem holding ``$GLUON_BN_FAULT_BALLAST`` with that file, so the write in progress runs out of space.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

from gluon_bn.reliability import faults

ENV = "GLUON_BN_FAULT"
BALLAST_ENV = "GLUON_BN_FAULT_BALLAST"
ACTIONS = {"kill": signal.SIGKILL, "interrupt": signal.SIGINT, "fill": None}
_arrivals: Counter = Counter()


def _parse(spec: str) -> tuple[str, str, dict[str, str]]:
    action, _, rest = spec.partition("@")
    point, _, conditions = rest.partition(":")
    try:
        want = dict(item.split("=", 1) for item in conditions.split(",") if item)
    except ValueError:
        want = None
    if action not in ACTIONS or point not in faults.POINTS or want is None:
        raise ValueError(
            f"${ENV}={spec!r}: expected ACTION@POINT[:key=value,...] with ACTION one of "
            f"{', '.join(ACTIONS)} and POINT one of {', '.join(faults.POINTS)}"
        )
    return action, point, want


def handler(point: str, where: dict) -> None:
    """Kill, interrupt or fill the disk here when ``$GLUON_BN_FAULT`` names this point and place."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    action, at, want = _parse(spec)
    if at != point or any(str(where.get(key)) != value for key, value in want.items() if key != "n"):
        return
    _arrivals[spec] += 1
    if _arrivals[spec] != int(want.get("n", 1)):
        return
    if action == "fill":
        _fill(os.environ[BALLAST_ENV])
    else:
        signal.raise_signal(ACTIONS[action])


def _fill(ballast: str) -> None:
    """Write ``ballast`` until its filesystem has no space left."""
    with open(ballast, "ab", buffering=0) as out:
        for block in (bytes(64 * 1024), b"\0"):  # then the last few bytes
            try:
                while out.write(block):
                    pass
            except OSError:
                pass


def fault_env(env: dict, fault: str | None) -> dict:
    """``env`` for a child process: armed with ``fault`` when one is given, and never armed otherwise."""
    env = {k: v for k, v in env.items() if k not in (ENV, faults.HOOK_ENV)}
    if fault:
        env.update({ENV: fault, faults.HOOK_ENV: str(Path(__file__).resolve())})
    return env


faults.arm(handler)
