"""MXNet's CPU threads: chosen before MXNet loads, because MXNet fixes them when it loads.

What MXNet 1.9.1 does (``src/engine/openmp.cc``, checked on this project's machines): when it
loads, without ``$OMP_NUM_THREADS``, it takes *half* the logical CPUs on x86 (it assumes two
hyper-threads per core), so on a 2-vCPU machine every operator runs on one thread. Its
engine's worker threads, which run the operators and oneDNN's kernels, take that count when
they start. ``MXSetNumOMPThreads`` changes only the thread that calls it, and MXNet caps its own
kernels at the count it chose at load, so nothing after import changes what operators use.
``$OMP_NUM_THREADS`` set before MXNet loads is the one setting that does.

``import gluon_bn`` therefore sets ``$OMP_NUM_THREADS`` to the logical CPUs this process may
use, unless it is already set (yours wins) or MXNet was imported first (then it warns). The
``gluon-bn`` command's ``--threads N`` restarts the command with ``OMP_NUM_THREADS=N``. This
module imports MXNet only inside ``operator_threads``.
"""
from __future__ import annotations

import ctypes
import os
import sys
import warnings

__all__ = ["ENV", "configure", "logical_cpus", "operator_threads", "setup"]

ENV = "OMP_NUM_THREADS"
#: How this process's thread set-up was chosen (``configure`` sets it).
_chosen_by = "not configured"


def logical_cpus() -> int:
    """Logical CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def configure() -> str:
    """Set ``$OMP_NUM_THREADS`` for MXNet before it loads; say how the set-up was chosen."""
    global _chosen_by
    if os.environ.get(ENV):
        _chosen_by = f"${ENV} in the environment"
    elif "mxnet" in sys.modules:
        _chosen_by = "MXNet's default (MXNet was imported before gluon_bn)"
        warnings.warn(f"MXNet was imported before gluon_bn, so its CPU operators keep MXNet's default thread "
                      f"count (half the logical CPUs on x86); import gluon_bn first, or set {ENV}="
                      f"{logical_cpus()} before starting Python, to use all {logical_cpus()}", stacklevel=3)
    elif not onednn():
        os.environ[ENV] = "1"
        _chosen_by = "gluon-bn (one thread: oneDNN is off, see threads.onednn)"
    else:
        os.environ[ENV] = str(logical_cpus())
        _chosen_by = "gluon-bn (one thread per logical CPU)"
    return _chosen_by


def onednn() -> bool:
    """Whether MXNet's oneDNN operators are on (``MXNET_MKLDNN_ENABLED`` unset or not 0).

    With them off, MXNet 1.9.1 can hang for good when operators of two CPU contexts run OpenMP
    regions at once with more than one thread (seen here: the synchronized LeNet on cpu(0),
    cpu(1), 2 threads, 3 runs of 3), so gluon-bn then defaults to one thread, and a data-parallel
    run on several CPUs with more is refused (``devices.check_threads``).
    """
    return os.environ.get("MXNET_MKLDNN_ENABLED", "1") != "0"


class _Context(ctypes.Structure):
    """MXNet's C ``Context``: device type (1 = CPU) and device id."""

    _fields_ = [("dev_type", ctypes.c_int), ("dev_id", ctypes.c_int)]


def operator_threads() -> int:
    """The OpenMP threads MXNet's CPU operators run with, read inside MXNet's engine worker thread.

    Operators run in the engine's worker threads, not in the caller's, so this pushes a function
    onto the engine (``MXEnginePushSync``, MXNet's public C API) that asks OpenMP there.
    """
    from mxnet import nd
    from mxnet.base import _LIB, check_call

    openmp = ctypes.CDLL("libgomp.so.1")  # the OpenMP runtime MXNet's wheel links, already loaded
    seen: dict[str, int] = {}

    def ask(run_context, param):
        seen["threads"] = openmp.omp_get_max_threads()

    function = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(ask)
    check_call(_LIB.MXEnginePushSync(function, None, None, ctypes.byref(_Context(1, 0)), None, 0, None, 0,
                                     None, 0, None))
    nd.waitall()
    return seen["threads"]


def setup() -> dict:
    """The effective thread set-up, for records and reports."""
    return {"operator_threads": operator_threads(), "logical_cpus": logical_cpus(),
            ENV: os.environ.get(ENV), "chosen_by": _chosen_by}
