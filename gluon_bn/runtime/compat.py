"""NumPy names that MXNet 1.9.1 reads and newer NumPy removed, put back before MXNet loads.

MXNet 1.9.1 is the last release, and it reads NumPy names that NumPy 1.24 and 2.0 removed:
``import mxnet`` itself fails without them. ``import gluon_bn`` runs this first, before anything
imports MXNet. Each name is set only where the installed NumPy lacks it, to what NumPy's own
release notes name as its replacement; on NumPy 1.23.5 this changes nothing. The list is taken
from MXNet 1.9.1's source (``tests/test_compat.py`` checks it against the installed MXNet):
where MXNet reads each name, and the NumPy release that removed it, stand beside it.

This module imports only NumPy, so a program that must import MXNet before gluon_bn (to keep
MXNet's own thread set-up, as the bench's "chapter's code" does) runs it alone first: ``BEFORE_MXNET``.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import warnings
from typing import Callable

import numpy as np

__all__ = ["ALIASES", "BEFORE_MXNET", "REMOVED", "restore", "restored"]

#: One line of Python that runs this file without importing gluon_bn (whose ``__init__`` would set threads).
BEFORE_MXNET = (
    "import importlib.util, os, runpy; runpy.run_path(os.path.join("
    "importlib.util.find_spec('gluon_bn').submodule_search_locations[0], 'runtime', 'compat.py'))"
)


def _msort(a):
    """``np.msort(a)`` was ``np.sort(a, axis=0)``."""
    return np.sort(a, axis=0)


def _in1d(ar1, ar2, assume_unique=False, invert=False):
    """``np.in1d`` was ``np.isin`` flattened."""
    return np.isin(ar1, ar2, assume_unique=assume_unique, invert=invert).ravel()


def _renamed(new: str) -> Callable[[], Callable]:
    """A function of its own that calls ``np.<new>``: MXNet keys its dispatch table by function, so an
    alias that *is* ``np.<new>`` would take over ``<new>``'s entry."""

    def make():
        def call(*args, **kwargs):
            return getattr(np, new)(*args, **kwargs)

        call.__doc__ = f"The removed NumPy name for ``numpy.{new}``."
        return call

    return make


#: name -> (what replaces it, where MXNet 1.9.1 reads it, the NumPy release that removed it)
ALIASES: dict[str, tuple[Callable[[], object], str, str]] = {
    "bool": (lambda: bool, "mxnet/numpy/utils.py at import; numpy/multiarray.py", "1.24"),
    "int": (lambda: int, "mxnet/test_utils.py", "1.24"),
    "PZERO": (lambda: 0.0, "mxnet/numpy/utils.py at import", "2.0"),
    "NZERO": (lambda: -0.0, "mxnet/numpy/utils.py at import", "2.0"),
    "PINF": (lambda: np.inf, "mxnet/numpy/utils.py at import", "2.0"),
    "NINF": (lambda: -np.inf, "mxnet/numpy/utils.py at import", "2.0"),
    "NAN": (lambda: np.nan, "mxnet/numpy/utils.py at import", "2.0"),
    "NaN": (lambda: np.nan, "mxnet/numpy/utils.py at import", "2.0"),
    "Inf": (lambda: np.inf, "mxnet/gluon/contrib/estimator/event_handler.py at import", "2.0"),
    "alltrue": (_renamed("all"), "mxnet/numpy/fallback.py at import", "2.0"),
    "msort": (lambda: _msort, "mxnet/numpy/fallback.py at import", "2.0"),
    "in1d": (lambda: _in1d, "mxnet/numpy/fallback.py at import", "2.4"),
    "trapz": (_renamed("trapezoid"), "mxnet/numpy/fallback.py at import", "2.4"),
    "compat": (lambda: types.SimpleNamespace(basestring=str), "mxnet/ndarray/numpy/_op.py (pad)", "2.0"),
    "sometrue": (_renamed("any"), "mxnet/numpy_dispatch_protocol.py at import", "2.0"),
    "product": (_renamed("prod"), "mxnet/numpy_dispatch_protocol.py at import", "2.0"),
    "round_": (_renamed("round"), "mxnet/numpy_dispatch_protocol.py at import", "2.0"),
}

#: Removed with no NumPy equivalent (they moved to the numpy-financial package); MXNet's
#: ``mxnet/numpy/fallback.py`` names them at import, so each is a function that says so when called.
REMOVED = ("mirr", "npv", "pmt", "ppmt", "pv", "rate")

#: The names this process set (empty on a NumPy that has them all).
restored: list[str] = []


def _missing(name: str) -> bool:
    with warnings.catch_warnings():  # some names still exist but warn when read
        warnings.simplefilter("ignore")
        return not hasattr(np, name)


def _gone(name: str) -> Callable:
    def removed(*args, **kwargs):
        raise NotImplementedError(
            f"numpy.{name} is gone from NumPy (NumPy 1.20 moved it to numpy-financial); "
            f"use numpy_financial.{name} (pip install numpy-financial)"
        )

    removed.__name__ = name
    return removed


def restore() -> list[str]:
    """Set every missing name MXNet 1.9.1 reads; return the names set. Safe to call twice."""
    for name, (replacement, _, _) in ALIASES.items():
        if _missing(name):
            setattr(np, name, replacement())
            restored.append(name)
    for name in REMOVED:
        if _missing(name):
            setattr(np, name, _gone(name))
            restored.append(name)
    if sys.version_info >= (3, 12) and importlib.util.find_spec("distutils") is None:
        raise ImportError(
            "MXNet 1.9.1 imports distutils, which Python 3.12 removed; install setuptools, which "
            "provides it (pip install setuptools)"
        )
    return restored


restore()
