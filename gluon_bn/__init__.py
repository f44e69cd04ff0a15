"""gluon-bn: the "Batch Normalization" chapter of Dive into Deep Learning, in MXNet Gluon.

The chapter's own code is in :mod:`gluon_bn.chapter` (``layers``: ``batch_norm`` and ``BatchNorm``;
``training``: the book's ``train_ch5``; ``data``: the loader). Beside it: ``norms`` (the registry of
normalizations and the layers beside the chapter's), ``models`` (the LeNet with any of them), ``runs``
(the hardened ``train_ch5`` every command runs, which is this package's ``train_ch5``), and
``comparison``, ``experiments``, ``parallel``, ``performance``, ``reliability``, ``reports`` and
``runtime``. They import downward only (docs/layout.md); each ``gluon-bn`` command is one module of
:mod:`gluon_bn.commands`, which the library never imports.
"""

import os as _os
import sys as _sys
from importlib import metadata as _metadata

import _gluon_bn_mxnet_hook as _mxnet_hook  # gluon_bn/runtime/mxnet_hook.py, installed at site-packages' top

from .runtime import compat as _compat  # noqa: F401  first: NumPy names MXNet 1.9.1 needs, before it loads
from .runtime import threads as _threads


def _mxnet_missing(exc: ImportError) -> None:
    """MXNet absent or unable to load, said in one sentence; the ``gluon-bn`` command stops on it in one line."""
    error = exc
    if isinstance(exc, ModuleNotFoundError) and exc.name == "mxnet":
        error = _mxnet_hook.MXNetUnavailable(
            "gluon-bn needs MXNet 1.9.1, which is not installed: pip install mxnet==1.9.1 (the CPU build; "
            "or pip install 'gluon-bn[mxnet]'), or a CUDA 11 build such as mxnet-cu117==1.9.1 on a GPU machine"
        )
    command = _os.path.basename(_sys.argv[0]) == "gluon-bn" or _sys.orig_argv[1:3] == ["-m", "gluon_bn"]
    if command and isinstance(error, _mxnet_hook.MXNetUnavailable):
        _sys.exit(f"gluon-bn: error: {error}")
    if error is exc:
        raise exc
    raise error from exc


_mxnet_hook.install()  # a CUDA build that lacks its libraries fails in one sentence
_threads.configure()  # before anything below imports MXNet, which fixes its CPU threads when it loads
try:
    import mxnet as _mxnet  # noqa: F401
except ImportError as _exc:
    _mxnet_missing(_exc)

from .chapter.data import load_data_fashion_mnist  # noqa: E402
from .chapter.layers import BatchNorm, batch_norm
from .chapter.training import Epoch, try_gpu
from .comparison.checks import check_layer
from .errors import DataError, GluonBNError, UsageError
from .models import lenet
from .norms.fast import FastBatchNorm
from .norms.precise_bn import recompute_bn_stats
from .norms.sync import SyncBatchNorm
from .runs.loop import evaluate_accuracy, train_ch5

_threads.serial_python_thread()  # MXNet's copies on this thread must not start a second OpenMP team

try:
    __version__ = _metadata.version("gluon-bn")
except _metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

__all__ = [
    "BatchNorm",
    "DataError",
    "Epoch",
    "FastBatchNorm",
    "GluonBNError",
    "SyncBatchNorm",
    "UsageError",
    "batch_norm",
    "check_layer",
    "evaluate_accuracy",
    "lenet",
    "load_data_fashion_mnist",
    "recompute_bn_stats",
    "train_ch5",
    "try_gpu",
]
