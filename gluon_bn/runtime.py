"""MXNet settings that change speed, never results: CPU threads and compiled (hybridized) graphs."""
from __future__ import annotations

import contextlib
import ctypes
import os
from typing import Iterator

from mxnet import gluon
from mxnet.base import _LIB, check_call

__all__ = ["compile_net", "default_threads", "imperative", "is_compiled", "logical_cpus", "set_threads"]


def logical_cpus() -> int:
    """Logical CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_threads() -> int:
    """MXNet's own default operator threads: $OMP_NUM_THREADS, else one per logical CPU."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else logical_cpus()


def set_threads(threads: int | None = None) -> int:
    """Set OpenMP's thread count in the calling thread through MXNet (None: MXNet's default); return it."""
    threads = default_threads() if threads is None else threads
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    check_call(_LIB.MXSetNumOMPThreads(ctypes.c_int(threads)))
    return threads


def compile_net(net: gluon.Block) -> gluon.Block:
    """Hybridize ``net`` with static memory: one compiled graph per hybrid block, same numbers."""
    net.hybridize(static_alloc=True)
    return net


def is_compiled(net: gluon.Block) -> bool:
    """Whether ``hybridize`` compiled any block of ``net`` (blocks marked ``always_compiled`` aside).

    Gluon 1.9.1 has no public way to ask, so this reads ``HybridBlock._active``, the flag
    ``hybridize`` sets; ``tests/test_runtime.py`` fails loudly if MXNet renames it.
    """
    found: list[bool] = []
    net.apply(lambda block: found.append(isinstance(block, gluon.HybridBlock) and block._active
                                         and not getattr(block, "always_compiled", False)))
    return any(found)


@contextlib.contextmanager
def imperative(net: gluon.Block) -> Iterator[gluon.Block]:
    """Run ``net`` imperatively inside the block (so forward hooks fire), compiled again after."""
    was_compiled = is_compiled(net)
    net.hybridize(active=False)
    try:
        yield net
    finally:
        if was_compiled:
            compile_net(net)
