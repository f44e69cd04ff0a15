"""MXNet 1.9.1's and d2l 1.0.3's Python against the standard-library names Python 3.14 removed.

No 3.14 interpreter can be installed here, so gluon-bn does not claim 3.14; this file keeps the gap known. The
removals are taken from 3.14's "What's New" (section "Removed") and kept only where CPython 3.13 itself announces
them: each row quotes the 3.13.0 lines that do (checked below against a 3.13 interpreter when one is found).
``collections.abc.ByteString`` and ``typing.ByteString`` are left out although 3.13 says "remove=(3, 14)": 3.14
postponed that removal to 3.17. The scan reads the source with ``ast`` and never imports MXNet.
"""

import ast
import functools
import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest


class Quote(NamedTuple):
    """Lines ``first``-``last`` of a file of CPython 3.13.0's standard library, and what they say."""

    file: str
    first: int
    last: int
    says: tuple[str, ...]


def _q(file: str, lines: str, *says: str) -> Quote:
    """A ``Quote`` from ``"first-last"`` (or one line number)."""
    first, _, last = lines.partition("-")
    return Quote(file, int(first), int(last or first), says)


_R314 = "remove=(3, 14)"
_AST = (_q("ast.py", "1823-1831", "'Num', 'Str', 'Bytes', 'NameConstant', 'Ellipsis'", 'f"ast.{name}"', _R314),)
_RESOURCES_ABC = (
    _q("importlib/abc.py", "33-35", "_resources_abc.__all__", _R314),
    _q("importlib/resources/abc.py", "13", '"ResourceReader", "Traversable", "TraversableResources"'),
)
_SQLITE_NAMES = _q("sqlite3/dbapi2.py", "30", '_deprecated_names = frozenset({"version", "version_info"})')
_SQLITE = (_SQLITE_NAMES, _q("sqlite3/__init__.py", "63-67", "_deprecated_names", "removed in Python 3.14"))
_DBAPI2 = (_SQLITE_NAMES, _q("sqlite3/dbapi2.py", "101-105", "_deprecated_names", "removed in Python 3.14"))
_PTY = "# Remove API in 3.14"


def _watcher(name: str, lines: str) -> tuple[Quote, ...]:
    """3.13's ``warnings._deprecated("<name>", ..., remove=(3, 14))`` in asyncio/unix_events.py."""
    return (_q("asyncio/unix_events.py", lines, f'warnings._deprecated("{name}"', _R314),)


def _delegating(name: str, lines: str) -> tuple[Quote, ...]:
    """``asyncio.<name>()`` calls the policy's method of that name, which 3.13 says goes in 3.14."""
    policy = {"get_child_watcher": "1515-1517", "set_child_watcher": "1529-1531"}[name]
    calls = _q("asyncio/events.py", lines, f"def {name}(", f"get_event_loop_policy().{name}(")
    return (calls, *_watcher(name, policy))


REMOVED_IN_314: dict[tuple[str, str], tuple[Quote, ...]] = {
    ("ast", "Num"): _AST,
    ("ast", "Str"): _AST,
    ("ast", "Bytes"): _AST,
    ("ast", "NameConstant"): _AST,
    ("ast", "Ellipsis"): _AST,
    ("asyncio", "AbstractChildWatcher"): _watcher("AbstractChildWatcher", "893-896"),
    ("asyncio", "SafeChildWatcher"): _watcher("SafeChildWatcher", "1078-1081"),
    ("asyncio", "FastChildWatcher"): _watcher("FastChildWatcher", "1161-1164"),
    ("asyncio", "MultiLoopChildWatcher"): _watcher("MultiLoopChildWatcher", "1277-1280"),
    ("asyncio", "get_child_watcher"): _delegating("get_child_watcher", "840-842"),
    ("asyncio", "set_child_watcher"): _delegating("set_child_watcher", "845-848"),
    ("importlib.abc", "ResourceReader"): _RESOURCES_ABC,
    ("importlib.abc", "Traversable"): _RESOURCES_ABC,
    ("importlib.abc", "TraversableResources"): _RESOURCES_ABC,
    ("pkgutil", "get_loader"): (_q("pkgutil.py", "273-276", '"pkgutil.get_loader"', _R314),),
    ("pkgutil", "find_loader"): (_q("pkgutil.py", "301-304", '"pkgutil.find_loader"', _R314),),
    ("pty", "master_open"): (_q("pty.py", "38-44", "def master_open():", _PTY),),
    ("pty", "slave_open"): (_q("pty.py", "69-76", "def slave_open(tty_name):", _PTY),),
    ("sqlite3", "version"): _SQLITE,
    ("sqlite3", "version_info"): _SQLITE,
    ("sqlite3.dbapi2", "version"): _DBAPI2,
    ("sqlite3.dbapi2", "version_info"): _DBAPI2,
    ("urllib.parse", "Quoter"): (
        _q("urllib/parse.py", "829-832", "if name == 'Quoter':", "urllib.parse.Quoter will be removed in Python 3.14"),
    ),
}
"""Names 3.14 removed whose removal in 3.14 3.13 announces in so many words."""

_URLOPENER = _q(
    "urllib/request.py", "1684-1686", "%(class)s style of invoking requests is deprecated", "DeprecationWarning"
)
_ABSTRACT_WATCHER = _watcher("AbstractChildWatcher", "893-896")[0]

REMOVED_IN_314_UNDATED_IN_313: dict[tuple[str, str], tuple[Quote, ...]] = {
    ("urllib.request", "URLopener"): (_q("urllib/request.py", "1670", "class URLopener:"), _URLOPENER),
    ("urllib.request", "FancyURLopener"): (
        _q("urllib/request.py", "2120", "class FancyURLopener(URLopener):"),
        _URLOPENER,
    ),
    ("asyncio", "PidfdChildWatcher"): (
        _q("asyncio/unix_events.py", "954", "class PidfdChildWatcher(AbstractChildWatcher)"),
        _ABSTRACT_WATCHER,
    ),
    ("asyncio", "ThreadedChildWatcher"): (
        _q("asyncio/unix_events.py", "1384", "class ThreadedChildWatcher(AbstractChildWatcher)"),
        _ABSTRACT_WATCHER,
    ),
}
"""Also gone in 3.14, but 3.13 deprecates them without naming a version: URLopener has warned since 3.3, and these
two watchers subclass ``AbstractChildWatcher``, whose removal 3.13 dates. Scanned all the same."""

NOT_A_NAME: dict[str, tuple[Quote, ...]] = {
    "ast.Constant's .n and .s": (
        _q("ast.py", "539", '"Attribute n"', _R314),
        _q("ast.py", "554", '"Attribute s"', _R314),
    ),
    "argparse.BooleanOptionalAction(type=, choices=, metavar=)": (
        _q("argparse.py", "868-875", "('type', 'choices', 'metavar')", _R314),
    ),
    "email.utils.localtime(isdst=)": (_q("email/utils.py", "482-484", "'isdst' parameter to 'localtime'", _R314),),
    "pathlib.PurePath.relative_to(other, *more)": (
        _q("pathlib/_local.py", "375-376", "PurePath.relative_to()", "removal in Python 3.14"),
    ),
    "pathlib.PurePath.is_relative_to(other, *more)": (
        _q("pathlib/_local.py", "398-399", "PurePath.is_relative_to()", "removal in Python 3.14"),
    ),
    "pathlib.PurePath(**kwargs)": (_q("pathlib/_local.py", "500-502", "keyword arguments to pathlib.PurePath", _R314),),
}
"""Removals that are a parameter or an attribute of any object, not a module's name: not scanned for."""

WARNED_AT_RUN_TIME: dict[str, tuple[str, str]] = {
    "copy, deepcopy and pickle of itertools objects": (
        "import copy, itertools; copy.copy(itertools.count())",
        "Pickle, copy, and deepcopy support will be removed from itertools in Python 3.14",
    ),
    "sqlite3: named placeholders bound from a sequence": (
        "import sqlite3; sqlite3.connect(':memory:').execute('select :a', (1,)).close()",
        "Starting with Python 3.14 an sqlite3.ProgrammingError will be raised",
    ),
}
"""Removals announced by 3.13's C code, as (code that triggers the warning, what it says): not scanned for."""

SCANNED = {f"{module}.{name}" for module, name in REMOVED_IN_314 | REMOVED_IN_314_UNDATED_IN_313}
PACKAGES = ("mxnet", "d2l")

KNOWN_USES: frozenset[tuple[str, int, str]] = frozenset()
KNOWN_UNPARSEABLE: frozenset[str] = frozenset()


class Use(NamedTuple):
    """One use of a removed name: where, which, and whether it runs on import or only when a function is called."""

    path: str
    line: int
    name: str
    at_import: bool


def _runs_when_called(node: ast.AST, field: str) -> bool:
    """Whether ``node``'s ``field`` runs only on a call: a def's or lambda's body (not its decorators or defaults)."""
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and field == "body"


def _nodes_with_timing(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Every node, with whether it runs only when a function is called (iterative: MXNet nests deep)."""
    stack = [(tree, False)]
    while stack:
        node, deferred = stack.pop()
        yield node, deferred
        for field, value in ast.iter_fields(node):
            later = deferred or _runs_when_called(node, field)
            stack.extend(
                (child, later)
                for child in (value if isinstance(value, list) else [value])
                if isinstance(child, ast.AST)
            )


def _imported_names(tree: ast.AST) -> dict[str, str]:
    """What each name a file imports stands for: ``import a.b`` binds a, ``import a.b as x`` and ``from a import b``
    bind x and b to a.b. One table per file: a heuristic that ignores which scope imports."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                bound[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            bound.update({alias.asname or alias.name: f"{node.module}.{alias.name}" for alias in node.names})
    return bound


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of attributes on a plain name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


def _resolved(dotted: str | None, bound: dict[str, str]) -> str | None:
    """``dotted`` with its first part replaced by the module it was imported as; None if it was not imported."""
    head, _, rest = (dotted or "").partition(".")
    return None if head not in bound else bound[head] + (f".{rest}" if rest else "")


def _names_read(node: ast.AST, bound: dict[str, str]) -> list[str]:
    """The full dotted names ``node`` reads: ``from m import x``, ``alias.x``, ``a.b.x`` and ``getattr(m, "x")``."""
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [f"{node.module}.{alias.name}" for alias in node.names]
    if isinstance(node, ast.Attribute):
        return [name] if (name := _resolved(_dotted(node), bound)) else []
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "getattr"
        and len(node.args) >= 2
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
    ):
        module = _resolved(_dotted(node.args[0]), bound)
        return [f"{module}.{node.args[1].value}"] if module else []
    return []


def _parsed(path: Path) -> ast.AST:
    """``path``'s syntax tree, without the warnings old escape sequences draw."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(path.read_bytes(), filename=str(path))


def scan(root: Path, names: set[str]) -> tuple[set[Use], dict[str, str]]:
    """Uses of ``names`` in every .py file under package folder ``root``, and the files that do not parse (with why).
    Paths are relative to ``root``'s parent, so they start with the package's name."""
    uses, unparseable = set(), {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).as_posix()
        try:
            tree = _parsed(path)
        except (SyntaxError, ValueError, RecursionError) as exc:
            unparseable[relative] = f"{type(exc).__name__}: {exc}"
            continue
        bound = _imported_names(tree)
        uses |= {
            Use(relative, node.lineno, name, not deferred)
            for node, deferred in _nodes_with_timing(tree)
            for name in _names_read(node, bound)
            if name in names
        }
    return uses, unparseable


def _package_folders(package: str) -> list[Path]:
    """Where ``package`` is installed, found without importing it."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"{package} is not installed as a package"
    return [Path(location) for location in spec.submodule_search_locations]


@functools.cache
def _scan_installed() -> tuple[frozenset[Use], dict[str, str], int]:
    """The uses and unparseable files in the installed packages, and how many files were read."""
    uses, unparseable, files = set(), {}, 0
    for folder in (f for package in PACKAGES for f in _package_folders(package)):
        found, failed = scan(folder, SCANNED)
        uses, files = uses | found, files + sum(1 for _ in folder.rglob("*.py"))
        unparseable.update(failed)
    return frozenset(uses), unparseable, files


def test_the_scan_reads_mxnet_191_and_d2l_103():
    """KNOWN_USES is for these versions: another MXNet or d2l needs its list looked at again."""
    assert [importlib.metadata.version(p) for p in PACKAGES] == ["1.9.1", "1.0.3"]
    assert _scan_installed()[2] > 250  # the scan found the packages' files at all (268 here)


def test_every_file_of_mxnet_and_d2l_parses():
    """A file that does not parse could hide a use; it is named here rather than skipped."""
    assert _scan_installed()[1].keys() == KNOWN_UNPARSEABLE, _scan_installed()[1]


def test_mxnet_and_d2l_use_no_name_python_314_removed():
    """MXNet 1.9.1 and d2l 1.0.3 use none of the scanned names, so KNOWN_USES is empty: nothing of theirs breaks
    on 3.14 for these removals, neither ``import mxnet``/``import d2l`` (module level) nor any function (inside a
    def). Their only brushes with the affected modules are harmless: ``mxnet/numpy_op_fallback.py`` reads
    ``ast.literal_eval``, ``mxnet/tools/diagnose.py`` imports ``urllib.request.urlopen`` and ``urllib.parse.urlparse``
    (both kept in 3.14), and ``mxnet/tools/caffe_converter/compare_layers.py`` calls ``urllib.urlretrieve``, a
    Python 2 name no Python 3 has. A use appearing or going away (another MXNet or d2l) fails here."""
    found = {(use.path, use.line, use.name) for use in _scan_installed()[0]}
    assert found == KNOWN_USES


@pytest.mark.parametrize("module, name", sorted(REMOVED_IN_314 | REMOVED_IN_314_UNDATED_IN_313))
def test_each_name_exists_before_314_and_not_from_it(module, name):
    """The table names real things: present (deprecated) on 3.10-3.13, absent on 3.14 and later."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        present = hasattr(importlib.import_module(module), name)
    assert present == (sys.version_info < (3, 14))


def _python_313_candidates() -> list[str]:
    """Interpreters that may be CPython 3.13: this one, pyenv's, the one on PATH."""
    here = [sys.executable] if sys.version_info[:2] == (3, 13) else []
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    return here + sorted(map(str, pyenv.glob("versions/3.13*/bin/python3.13"))) + [shutil.which("python3.13") or ""]


@functools.cache
def _python_313() -> tuple[str, Path, tuple[int, ...]] | None:
    """A working CPython 3.13 on this machine: its path, its standard library's folder and its version."""
    code = "import sys, sysconfig; print(sysconfig.get_path('stdlib')); print(*sys.version_info[:3])"
    for exe in filter(None, _python_313_candidates()):
        try:
            done = subprocess.run([exe, "-c", code], capture_output=True, text=True, timeout=60)
        except OSError:
            continue
        lines = done.stdout.split("\n")
        if done.returncode == 0 and lines[1].startswith("3 13 "):
            return exe, Path(lines[0]), tuple(map(int, lines[1].split()))
    return None


def _quote_mismatch(quote: Quote, stdlib: Path, exact: bool) -> str | None:
    """Why ``quote`` is not what 3.13 says, or None: its lines say all of it (on 3.13.0 at those very lines)."""
    lines = (stdlib / quote.file).read_text().splitlines()
    span = quote.last - quote.first + 1
    starts = [quote.first - 1] if exact else range(len(lines))
    if any(all(said in "\n".join(lines[s : s + span]) for said in quote.says) for s in starts):
        return None
    return f"{quote.file}:{quote.first}-{quote.last} does not say {quote.says}"


def _all_quotes() -> list[Quote]:
    """Every quote of every table, once."""
    tables = (REMOVED_IN_314, REMOVED_IN_314_UNDATED_IN_313, NOT_A_NAME)
    return sorted({quote for table in tables for quotes in table.values() for quote in quotes})


def test_python_313_announces_each_removal_where_quoted():
    found = _python_313()
    if found is None:
        pytest.skip("no CPython 3.13 on this machine to read the quoted lines in")
    _, stdlib, version = found
    mismatches = [m for q in _all_quotes() if (m := _quote_mismatch(q, stdlib, exact=version == (3, 13, 0)))]
    assert mismatches == []


def _says_314(quotes: tuple[Quote, ...]) -> bool:
    """Whether the quotes name 3.14 as the version of the removal."""
    return any("3.14" in said or "(3, 14)" in said for quote in quotes for said in quote.says)


def test_each_dated_row_quotes_3_14_and_no_undated_one_does():
    """An undated row's first quote is about the name itself; a later one may date its base class."""
    assert [row for row, quotes in (REMOVED_IN_314 | NOT_A_NAME).items() if not _says_314(quotes)] == []
    assert [row for row, quotes in REMOVED_IN_314_UNDATED_IN_313.items() if _says_314(quotes[:1])] == []


@pytest.mark.parametrize("removal", sorted(WARNED_AT_RUN_TIME))
def test_python_313_warns_of_each_run_time_removal(removal):
    found = _python_313()
    if found is None:
        pytest.skip("no CPython 3.13 on this machine to run")
    code, says = WARNED_AT_RUN_TIME[removal]
    done = subprocess.run(
        [found[0], "-W", "error::DeprecationWarning", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert "DeprecationWarning" in done.stderr and says in done.stderr, done.stderr


SYNTHETIC = {
    "uses.py": """\
import pkgutil
import urllib.request
import urllib.parse as up
from urllib import request
from importlib import abc as iabc
import sqlite3
import ast
from pty import master_open
pkgutil.find_loader("x")
up.Quoter
getattr(sqlite3, "version_info")
urllib.request.URLopener.open
def deferred(reader=iabc.Traversable):
    from pty import slave_open
    return request.FancyURLopener(), pkgutil.get_loader("x")
check = lambda node: isinstance(node, ast.Num)
@iabc.ResourceReader.register
class Reader:
    def read(self):
        return getattr(up, "Quoter"), ast.Constant, urllib.request.urlopen, up.quote
""",
    "unbound.py": "pkgutil.find_loader('x')\nfrom .pty import master_open\nclass ast: Num = 1\nast.Num\n",
    "broken.py": "def f(:\n",
}


def test_the_scanner_finds_each_form(tmp_path):
    """Each form of use, at import or on call; names never imported, relative imports and kept names are no use."""
    package = tmp_path / "pkg"
    package.mkdir()
    for name, text in SYNTHETIC.items():
        (package / name).write_text(text)
    uses, unparseable = scan(package, SCANNED)
    expected = {
        (8, "pty.master_open", True),
        (9, "pkgutil.find_loader", True),
        (10, "urllib.parse.Quoter", True),
        (11, "sqlite3.version_info", True),
        (12, "urllib.request.URLopener", True),
        (13, "importlib.abc.Traversable", True),
        (14, "pty.slave_open", False),
        (15, "urllib.request.FancyURLopener", False),
        (15, "pkgutil.get_loader", False),
        (16, "ast.Num", False),
        (17, "importlib.abc.ResourceReader", True),
        (20, "urllib.parse.Quoter", False),
    }
    assert {(u.line, u.name, u.at_import) for u in uses} == expected
    assert {u.path for u in uses} == {"pkg/uses.py"}
    assert list(unparseable) == ["pkg/broken.py"] and unparseable["pkg/broken.py"].startswith("SyntaxError")
