"""``gluon_bn.runtime.compat``: every NumPy name MXNet 1.9.1 reads is there, as NumPy had it; nothing else changes."""

import importlib.util
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from gluon_bn.runtime import compat

KNOWN = set(compat.ALIASES) | set(compat.REMOVED)


def _numpy_names_mxnet_reads() -> set[str]:
    """Names MXNet's Python reads from the real NumPy: ``alias.NAME`` where the file imports NumPy as
    ``alias``, and the operator names its dispatch protocol looks up with ``getattr``."""
    root = Path(importlib.util.find_spec("mxnet").origin).parent
    names = set()
    for path in root.rglob("*.py"):
        text = path.read_text(errors="replace")
        aliases = set(re.findall(r"^\s*import numpy as (\w+)\s*$", text, re.M))
        aliases |= {"numpy"} if re.search(r"^\s*import numpy\s*$", text, re.M) else set()
        for alias in aliases:
            names |= set(re.findall(rf"(?<![\w.]){re.escape(alias)}\.([A-Za-z_]\w*)", text))
        for listed in re.findall(r"_NUMPY_ARRAY_(?:FUNCTION|UFUNC)_LIST\s*=\s*\[(.*?)\]", text, re.S):
            names |= {n.split(".")[0] for n in re.findall(r"'([\w.]+)'", listed)}
    return names


def _lacking_in_fresh_numpy(names) -> list[str]:
    """Which of ``names`` the installed NumPy lacks, asked in an interpreter where gluon_bn never ran."""
    code = (
        "import json, sys, warnings, numpy as np; warnings.simplefilter('ignore'); "
        "print(json.dumps([n for n in json.loads(sys.argv[1]) if not hasattr(np, n)]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(sorted(names))], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(done.stdout)


def test_the_list_is_mxnets_own():
    reads = _numpy_names_mxnet_reads()
    assert len(reads) > 150  # the scan found MXNet's NumPy uses at all
    assert sorted(KNOWN - reads) == []  # no name is restored that MXNet does not read


def test_every_name_mxnet_reads_that_this_numpy_lacks_is_restored():
    public = {n for n in _numpy_names_mxnet_reads() if not n.startswith("_")}  # NumPy's private names aside
    lacking = _lacking_in_fresh_numpy(public)
    assert sorted(set(lacking) - KNOWN) == []
    assert sorted(compat.restored) == sorted(lacking)  # restored exactly those, nothing where NumPy has it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert all(hasattr(np, name) for name in KNOWN)


def test_nothing_changes_where_numpy_has_the_names():
    """Compared in NumPy's module dict: a name NumPy serves from its module ``__getattr__`` (NumPy 1.23's
    financial stubs) is a new object at every access, so only "not set" can be checked for those."""
    code = (
        "import json, warnings, numpy as np; warnings.simplefilter('ignore'); "
        f"names = {sorted(KNOWN)!r}; before = {{n: vars(np)[n] for n in names if n in vars(np)}}; "
        "served = [n for n in names if n not in vars(np) and hasattr(np, n)]; "
        "import gluon_bn; print(json.dumps([n for n, v in before.items() if vars(np)[n] is not v] "
        "+ [n for n in served if n in vars(np)]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


A = np.array([[3.0, -1.0, 2.5], [0.0, 7.0, -2.0]])


@pytest.mark.parametrize(
    "name, check",
    [
        ("msort", lambda f: np.array_equal(f(A), np.sort(A, axis=0))),
        ("in1d", lambda f: np.array_equal(f(A, [7.0, 0.0]), np.isin(A, [7.0, 0.0]).ravel())),
        ("in1d", lambda f: np.array_equal(f(A, [7.0], invert=True), ~np.isin(A, [7.0]).ravel())),
        ("alltrue", lambda f: f(A > -5) and not f(A > 0)),
        ("sometrue", lambda f: f(A > 6) and not f(A > 7)),
        ("product", lambda f: f(A[0]) == -7.5 and np.array_equal(f(A, axis=0), np.prod(A, axis=0))),
        ("round_", lambda f: np.array_equal(f(A / 3, 2), np.round(A / 3, 2))),
        ("trapz", lambda f: f([1.0, 2.0, 3.0]) == 4.0 and f([1.0, 2.0, 3.0], dx=2.0) == 8.0),
        ("PZERO", lambda v: v == 0.0 and np.copysign(1, v) == 1),
        ("NZERO", lambda v: v == 0.0 and np.copysign(1, v) == -1),
        ("PINF", lambda v: v == np.inf),
        ("NINF", lambda v: v == -np.inf),
        ("Inf", lambda v: v == np.inf),
        ("NAN", lambda v: np.isnan(v)),
        ("NaN", lambda v: np.isnan(v)),
        ("bool", lambda v: v is bool),
        ("int", lambda v: v is int),
        ("compat", lambda v: v.basestring is str),
    ],
)
def test_each_replacement_does_what_the_removed_name_did(name, check):
    """Checked on the replacement itself, so it is tested under a NumPy that still has the name too."""
    if name == "trapz" and not hasattr(np, "trapezoid"):
        pytest.skip("NumPy before 2.0 has no trapezoid to stand in for trapz, and keeps trapz itself")
    assert check(compat.ALIASES[name][0]())


@pytest.mark.parametrize("name", compat.REMOVED)
def test_a_removed_function_says_where_it_went_when_called(name):
    with pytest.raises(
        NotImplementedError,
        match=rf"numpy\.{name} is gone .* numpy_financial\.{name} "
        r"\(pip install numpy-financial\)",
    ):
        compat._gone(name)(0.1, [1.0, 2.0])
