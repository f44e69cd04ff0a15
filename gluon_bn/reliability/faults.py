"""Test-only fault injection: a kill -9 or a Ctrl-C at a named point, chosen by ``$GLUON_BN_FAULT``.

The interruption tests need the process to die, or to be interrupted, at an exact place (before
the first checkpoint, mid-epoch in the second model, half-way through writing a checkpoint or the
record) rather than after a sleep that lands wherever the machine's speed puts it. The code calls
``reached(point, **where)`` at those places; nothing happens unless the environment names that
point, as ``ACTION@POINT[:key=value,...]``, for example::

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

__all__ = ["BALLAST_ENV", "ENV", "POINTS", "reached"]

ENV = "GLUON_BN_FAULT"
BALLAST_ENV = "GLUON_BN_FAULT_BALLAST"
#: The named points and what they pass: where the code calls ``reached``.
POINTS = {
    "batch": "after a training batch's update (model, epoch, batch)",
    "checkpoint": "half-way through writing a checkpoint folder (model, number)",
    "open": "when a file's temporary copy is made, before anything is written to it (file)",
    "write": "after a file's temporary copy is written, before it replaces the file (file)",
}
ACTIONS = {"kill": signal.SIGKILL, "interrupt": signal.SIGINT, "fill": None}
_arrivals: Counter = Counter()


def _parse(spec: str) -> tuple[str, str, dict[str, str]]:
    action, _, rest = spec.partition("@")
    point, _, conditions = rest.partition(":")
    try:
        want = dict(item.split("=", 1) for item in conditions.split(",") if item)
    except ValueError:
        want = None
    if action not in ACTIONS or point not in POINTS or want is None:
        raise ValueError(
            f"${ENV}={spec!r}: expected ACTION@POINT[:key=value,...] with ACTION one of "
            f"{', '.join(ACTIONS)} and POINT one of {', '.join(POINTS)}"
        )
    return action, point, want


def reached(point: str, **where: object) -> None:
    """Kill or interrupt this process here when ``$GLUON_BN_FAULT`` names this point and place."""
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
