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
``gluon-bn`` command's ``--threads N`` restarts the command with ``OMP_NUM_THREADS=N``.

The Python thread gets one OpenMP thread (``serial_python_thread``). MXNet copies a NumPy array
into an NDArray on the calling thread, and a copy of 200,000 elements or more (one batch of 256
Fashion-MNIST images) is an OpenMP parallel loop (``common::ParallelCopy``, threshold
``MXNET_CPU_PARALLEL_SIZE``). Its team's threads stay in libgomp's pool for good, so the process
then has more OpenMP threads than CPUs, and libgomp then cuts the time every waiting thread spins
from about 300,000 rounds to 100 (``do_spin`` in ``libgomp/config/linux/wait.h``, "throttled"
spinning). The operator threads' own team then sleeps in the kernel between the many small
parallel loops of a LeNet step and is woken for each: twice the time per step on a 2-vCPU AMD EPYC, 1.2x on an
Intel Xeon.
With one thread the copy is a plain ``memcpy`` and no second team exists. This module imports
MXNet only inside its functions.
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings

__all__ = [
    "ENV",
    "configure",
    "given_by_user",
    "logical_cpus",
    "operator_threads",
    "python_thread_threads",
    "serial_python_thread",
    "setup",
]

ENV = "OMP_NUM_THREADS"
#: How this process's thread set-up was chosen (``configure`` sets it).
_chosen_by = "not configured"


def logical_cpus() -> int:
    """Logical CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


#: MXNet's switch for its storage-fallback warnings (read once, at the first operator that falls back).
FALLBACK_LOG_ENV = "MXNET_STORAGE_FALLBACK_LOG_VERBOSE"


def configure() -> str:
    """Set ``$OMP_NUM_THREADS`` for MXNet before it loads; say how the set-up was chosen.

    With oneDNN off, MXNet 1.9.1 also logs a "storage type fallback" warning for every operator it
    runs (harmless, by its own words), so that log is off unless ``$MXNET_STORAGE_FALLBACK_LOG_VERBOSE`` is set.
    """
    global _chosen_by
    if not onednn():
        os.environ.setdefault(FALLBACK_LOG_ENV, "0")
    if os.environ.get(ENV):
        _chosen_by = f"${ENV} in the environment"
    elif "mxnet" in sys.modules:
        _chosen_by = "MXNet's default (MXNet was imported before gluon_bn)"
        warnings.warn(
            f"MXNet was imported before gluon_bn, so its CPU operators keep MXNet's default thread "
            f"count (half the logical CPUs on x86); import gluon_bn first, or set {ENV}="
            f"{logical_cpus()} before starting Python, to use all {logical_cpus()}",
            stacklevel=3,
        )
    elif not onednn():
        os.environ[ENV] = "1"
        _chosen_by = "gluon-bn (one thread: oneDNN is off, see threads.onednn)"
    else:
        os.environ[ENV] = str(logical_cpus())
        _chosen_by = "gluon-bn (one thread per logical CPU)"
    return _chosen_by


def given_by_user() -> bool:
    """Whether ``$OMP_NUM_THREADS`` came from the environment this process started with, not from gluon-bn."""
    return _chosen_by == f"${ENV} in the environment"


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


def _openmp() -> ctypes.CDLL:
    """The OpenMP runtime MXNet's wheel links (GNU libgomp), already loaded with MXNet."""
    return ctypes.CDLL("libgomp.so.1")


def _set_calling_thread_openmp(count: int) -> None:
    """Set the OpenMP threads of the calling thread only, through MXNet's C API.

    ``MXSetNumOMPThreads`` is public in MXNet's C API, but Python reaches it only through the
    private ``mxnet.base._LIB``; ``tests/test_threads.py`` fails loudly if MXNet renames either.
    """
    from mxnet.base import _LIB, check_call

    check_call(_LIB.MXSetNumOMPThreads(ctypes.c_int(count)))


def serial_python_thread() -> int:
    """Give the calling thread one OpenMP thread, so MXNet's copies on it start no OpenMP team.

    Operators still run on all operator threads: they run in MXNet's engine threads, whose count
    this does not touch. Under ``MXNET_ENGINE_TYPE=NaiveEngine`` operators run on the calling
    thread itself, so there it changes nothing. Returns the calling thread's OpenMP threads.
    """
    if os.environ.get("MXNET_ENGINE_TYPE") != "NaiveEngine" and python_thread_threads() != 1:
        _set_calling_thread_openmp(1)
    return python_thread_threads()


def python_thread_threads() -> int:
    """The OpenMP threads a parallel loop started on the calling thread would use."""
    return _openmp().omp_get_max_threads()


def operator_threads() -> int:
    """The OpenMP threads MXNet's CPU operators run with, read inside MXNet's engine worker thread.

    Operators run in the engine's worker threads, not in the caller's, so this pushes a function
    onto the engine (``MXEnginePushSync``, MXNet's public C API) that asks OpenMP there.
    """
    from mxnet import nd
    from mxnet.base import _LIB, check_call

    openmp = _openmp()
    seen: dict[str, int] = {}

    def ask(run_context, param):
        seen["threads"] = openmp.omp_get_max_threads()

    function = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(ask)
    check_call(
        _LIB.MXEnginePushSync(function, None, None, ctypes.byref(_Context(1, 0)), None, 0, None, 0, None, 0, None)
    )
    nd.waitall()
    return seen["threads"]


def setup() -> dict:
    """The effective thread set-up, for records and reports: operator threads and the Python thread's."""
    return {
        "operator_threads": operator_threads(),
        "python_thread": python_thread_threads(),
        "logical_cpus": logical_cpus(),
        ENV: os.environ.get(ENV),
        "chosen_by": _chosen_by,
    }
