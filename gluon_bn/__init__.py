"""gluon-bn: the "Batch Normalization" chapter of Dive into Deep Learning, in MXNet Gluon.

The chapter's own code is in :mod:`gluon_bn.chapter` (``layers``: ``batch_norm`` and ``BatchNorm``;
``models``: the LeNet; ``data``, ``training``). Each other sub-package is one part built beside
it (``comparison``, ``parallel``, ``performance``, ``reliability``, ``reports``, ``experiments``,
``runs``, ``runtime``), ``norms`` is the registry of normalizations, and each ``gluon-bn``
command is one module of :mod:`gluon_bn.commands`, which the library never imports.
"""
from importlib import metadata as _metadata

from .runtime import compat as _compat  # noqa: F401  first: NumPy names MXNet 1.9.1 needs, before it loads
from .runtime import threads as _threads

_threads.configure()  # before anything below imports MXNet, which fixes its CPU threads when it loads

from .chapter.data import load_data_fashion_mnist  # noqa: E402
from .chapter.layers import BatchNorm, batch_norm
from .chapter.models import lenet
from .chapter.training import Epoch, evaluate_accuracy, train_ch5, try_gpu
from .comparison.checks import check_layer
from .experiments.precise_bn import recompute_bn_stats
from .parallel.sync import SyncBatchNorm
from .performance.fast import FastBatchNorm
from .reliability.errors import DataError, GluonBNError, UsageError

_threads.serial_python_thread()  # MXNet's copies on this thread must not start a second OpenMP team

try:
    __version__ = _metadata.version("gluon-bn")
except _metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

__all__ = ["BatchNorm", "DataError", "Epoch", "FastBatchNorm", "GluonBNError", "SyncBatchNorm", "UsageError", "batch_norm",
           "check_layer", "evaluate_accuracy", "lenet", "load_data_fashion_mnist", "recompute_bn_stats", "train_ch5",
           "try_gpu"]
