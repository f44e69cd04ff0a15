"""MXNet settings that change speed, never results: CPU threads and compiled (hybridized) graphs.

Measured on a 2-vCPU machine (one physical core, two hyperthreads): MXNet's default of one
OpenMP thread per logical CPU made an ``nn.BatchNorm`` LeNet step ~30 % slower than one thread
per physical core, which is also what PyTorch picks. ``gluon-bn bench`` measures both.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path
from typing import Iterator

from mxnet import gluon
from mxnet.base import _LIB, check_call

__all__ = ["compile_net", "imperative", "physical_cores", "set_threads"]

_SYS_CPU = Path("/sys/devices/system/cpu")


def physical_cores() -> int:
    """Physical cores this process may run on (logical CPUs where the topology is unknown)."""
    logical = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in logical:
        siblings = _SYS_CPU / f"cpu{cpu}" / "topology" / "thread_siblings_list"
        try:
            cores.add(siblings.read_text().strip())
        except OSError:
            return len(logical)
    return max(1, len(cores))


def set_threads(threads: int | None = None) -> int:
    """Set the OpenMP threads MXNet's CPU operators use (default: physical cores); return it."""
    threads = physical_cores() if threads is None else threads
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    check_call(_LIB.MXSetNumOMPThreads(ctypes.c_int(threads)))
    return threads


def compile_net(net: gluon.Block) -> gluon.Block:
    """Hybridize ``net`` with static memory: one compiled graph per hybrid block, same numbers."""
    net.hybridize(static_alloc=True)
    return net


@contextlib.contextmanager
def imperative(net: gluon.Block) -> Iterator[gluon.Block]:
    """Run ``net`` imperatively inside the block (so forward hooks fire), compiled again after."""
    was_compiled = isinstance(net, gluon.HybridBlock) and net._active or any(
        isinstance(child, gluon.HybridBlock) and child._active for child in net._children.values())
    net.hybridize(active=False)
    try:
        yield net
    finally:
        if was_compiled:
            compile_net(net)
