"""Shared fixtures: the real Fashion-MNIST files, an isolated search path, a loopback mirror, the CLI."""

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from fault_hook import fault_env
from hypothesis import settings

from gluon_bn.chapter import fashion_mnist
from gluon_bn.errors import DataError

DEAD_URL = "http://127.0.0.1:9/"  # the discard port: connections are refused at once

# Hypothesis: CI tries many examples; a local run fewer, unless HYPOTHESIS_PROFILE=ci.
settings.register_profile("ci", max_examples=400, deadline=None)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_collection_modifyitems(items):
    """Tests that need root (``system``) or a whole emulated runtime (``colab``) are slow too: the fast tier,
    ``-m "not slow"``, leaves them out."""
    for item in items:
        if item.get_closest_marker("system") or item.get_closest_marker("colab"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """Where the real Fashion-MNIST lives on this machine (CI installs dataset-fashion-mnist)."""
    try:
        return fashion_mnist.find_data_dir(download_missing=False)
    except DataError as exc:
        pytest.fail(f"real Fashion-MNIST is needed for these tests: {exc}")


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """No test reaches the internet: downloads go to a refused loopback port unless a test serves one."""
    monkeypatch.setenv("GLUON_BN_DATA_URL", DEAD_URL)


@pytest.fixture
def figures_closed():
    """Fails a test that leaves a matplotlib figure open: a command writes its PNGs and closes what it drew."""
    before = set(plt.get_fignums())
    yield
    left = set(plt.get_fignums()) - before
    assert not left, f"{len(left)} figure(s) left open"


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """Empty search path: no $GLUON_BN_DATA, MXNet's cache in tmp, no Debian folder."""
    monkeypatch.delenv("GLUON_BN_DATA", raising=False)
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "mxnet-home"))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
    return tmp_path


@pytest.fixture
def data_copy(real_data_dir, tmp_path) -> Path:
    """A private, writable copy of the four real files."""
    target = tmp_path / "fashion"
    target.mkdir()
    for name in fashion_mnist.FILES:
        shutil.copy(real_data_dir / name, target / name)
    return target


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; files named in ``cut`` are sent half-way and the connection dropped."""

    cut: frozenset = frozenset()

    def log_message(self, *args):
        pass

    def copyfile(self, source, outputfile):
        if Path(self.path).name in self.cut:
            blob = source.read()
            outputfile.write(blob[: len(blob) // 2])
            self.close_connection = True
            return
        super().copyfile(source, outputfile)


@pytest.fixture
def mirror(real_data_dir, monkeypatch):
    """Start a loopback HTTP mirror of the real files; call it with names to cut short."""
    servers = []

    def start(cut=()):
        handler = type("Handler", (_Handler,), {"cut": frozenset(cut)})
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(real_data_dir))
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        monkeypatch.setenv("GLUON_BN_DATA_URL", url)
        return url

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def run_gluon_bn(*args, env=None, cwd=None, fault=None) -> subprocess.CompletedProcess:
    """``python -m gluon_bn ARGS`` in a child process; its output as text.

    ``env`` is the child's environment (default: this process's, as it is now). The fault hook
    never leaks into the child: it is armed with ``fault`` when one is given (``fault_hook``), and not otherwise.
    """
    env = fault_env(os.environ if env is None else env, fault)
    return subprocess.run(
        [sys.executable, "-m", "gluon_bn", *args], capture_output=True, text=True, timeout=600, env=env, cwd=cwd
    )


@pytest.fixture(scope="session")
def gluon_bn_cli():
    """The ``gluon-bn`` command line in a child process: ``gluon_bn_cli(*args, env=, cwd=, fault=)``.

    Session-scoped (it holds no state) so module-scoped fixtures can run the CLI too.
    """
    return run_gluon_bn
