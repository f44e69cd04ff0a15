"""A test hook, and only that: the places where a test may stop a run (kill -9, Ctrl-C, a full disk).

gluon_bn calls ``reached(point, **where)`` at the places in ``POINTS``. It does nothing unless a test
armed it: in the test's own process with ``arm(handler)``, or in a child process by naming its hook
file in ``$GLUON_BN_TEST_HOOK`` (``tests/fault_hook.py``, which arms itself when loaded). No command,
option or default sets either, so a user's run never reaches a fault.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Callable

__all__ = ["HOOK_ENV", "POINTS", "arm", "reached"]

HOOK_ENV = "GLUON_BN_TEST_HOOK"
#: The named points and what they pass: where the code calls ``reached``.
POINTS = {
    "batch": "after a training batch's update (model, epoch, batch)",
    "checkpoint": "half-way through writing a checkpoint folder (model, number)",
    "open": "when a file's temporary copy is made, before anything is written to it (file)",
    "write": "after a file's temporary copy is written, before it replaces the file (file)",
}
_handler: Callable[[str, dict], None] | None = None
_looked = False


def arm(handler: Callable[[str, dict], None] | None) -> None:
    """Let a test's ``handler(point, where)`` see every point reached in this process (None disarms)."""
    global _handler
    _handler = handler


def reached(point: str, **where: object) -> None:
    """This run is at ``point`` (``where`` says which batch, model or file): a test's handler may act here."""
    if _handler is None and not _load_hook():
        return
    _handler(point, where)


def _load_hook() -> bool:
    """Load the hook file a test named in ``$GLUON_BN_TEST_HOOK``, once; whether a handler is armed now."""
    global _looked
    if not _looked:
        _looked = True
        path = os.environ.get(HOOK_ENV)
        if path:
            spec = importlib.util.spec_from_file_location("_gluon_bn_test_hook", path)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return _handler is not None
