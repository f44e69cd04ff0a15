"""A job's processes, started, watched and stopped as one: ps-lite's scheduler, the servers and the workers.

Each node is started with MXNet's documented environment (``DMLC_ROLE``, ``DMLC_PS_ROOT_URI``/``PORT``,
``DMLC_NUM_SERVER``/``WORKER``), the scheduler and servers as ``gluon_bn.parallel.ps_node``, each
worker as a gluon-bn command; every line of their output is prefixed with the process's role and
rank. When any process fails, the rest are stopped within seconds and the supervisor says which one
and how. No process is left behind: each child runs in its own process group, dies with the
launcher (``PR_SET_PDEATHSIG``), and is killed on the way out; on another host it runs under
``parallel.tether``, which ends it with its ssh session, binds the address the hosts file gives its
host, and is reached by ssh with keep-alives, so a cut host ends the job within a few of them
(``parallel.hosts``). SIGINT and SIGTERM stop the job the same way, with exit status 130.
MXNet's shipped ``tools/launch.py`` is not used: its dmlc tracker calls ``Thread.isAlive()``, gone
since Python 3.9, and leaves its scheduler running.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Callable

from ..runtime import threads as thread_setup
from .hosts import Heartbeat, Host, remote_argv
from .ps_node import ROLE_ENV
from .tether import die_with_parent

__all__ = ["run_job", "worker_threads"]

#: What each worker's first line says about its rank.
_RANK_LINE = re.compile(r"^kvstore \S+: worker rank (\d+) of \d+$")
_SSH_FAILED = 255  # ssh's exit status for its own failures (the host unreachable, the connection lost)


class _Process:
    """One node of the job: its process, its label, its host, and a thread copying its output with the label."""

    def __init__(
        self,
        role: str,
        index: int,
        argv: list[str],
        env: dict,
        lock: threading.Lock,
        write: Callable[[str], None],
        host: Host | None = None,
    ):
        self.role, self.label = role, f"{role} {index}" if role != "worker" else "worker ?"
        self.host, self.last = host, ""
        self.process = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if host else subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self._lock, self._write = lock, write
        self.reader = threading.Thread(target=self._copy, daemon=True)
        self.reader.start()

    def _copy(self) -> None:
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            rank = _RANK_LINE.match(line)
            if rank:
                self.label = f"worker {rank.group(1)}"
            self.last = line or self.last
            with self._lock:
                self._write(f"[{self.label}] {line}")

    def name(self) -> str:
        """The node as the launcher's lines name it: role, rank, and host when remote."""
        return self.label + (f" on {self.host.name}" if self.host else "")

    def how(self) -> str:
        code = self.process.returncode
        if code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        if code == _SSH_FAILED and self.host:
            self.reader.join(timeout=1)  # ssh's own last words
            return f"lost its ssh connection to {self.host.name} (ssh exited 255; last line: {self.last or 'none'})"
        if self.host and code - 128 in set(signal.Signals):  # the tether's report of a signal
            return f"was killed by {signal.Signals(code - 128).name}"
        return f"exited with status {code}"

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass


def _node_argv(role: str, command: list[str]) -> list[str]:
    """What a node runs: a worker its gluon-bn command, the scheduler and servers ``gluon_bn.parallel.ps_node``."""
    if role == "worker":
        return [sys.executable, "-m", "gluon_bn", *command]
    return [sys.executable, "-m", "gluon_bn.parallel.ps_node"]


def worker_threads(per_host: int) -> str:
    """Each worker's operator threads: your ``$OMP_NUM_THREADS``, else its share of this machine's CPUs.

    Not the one-thread-per-CPU that the launcher's own ``import gluon_bn`` put into ``os.environ``:
    handed on, that gives every worker all the CPUs, and their OpenMP teams then fight over them.
    """
    if thread_setup.given_by_user():
        return os.environ[thread_setup.ENV]
    return str(max(1, (os.cpu_count() or 1) // per_host))


def run_job(
    command: list[str],
    *,
    workers: int,
    servers: int,
    env: dict[str, str],
    hosts: list[Host] | None,
    ssh: list[str],
    interface: str | None,
    keepalive: float,
    grace: float,
    log: Callable[[str], None],
) -> int:
    """Run the job to its end; 0 when every worker finished, 1 when a node failed, 130 on SIGINT or SIGTERM."""
    threads = worker_threads(-(-workers // (len(hosts) if hosts else 1)))
    lock = threading.Lock()
    nodes: list[_Process] = []
    stop: list[str] = []
    heartbeat = Heartbeat(keepalive) if hosts else None
    previous = {
        sig: signal.signal(sig, lambda s, _: stop.append(signal.Signals(s).name))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    log(
        f"launch: scheduler on {env['DMLC_PS_ROOT_URI']}:{env['DMLC_PS_ROOT_PORT']}, {servers} server(s), "
        f"{workers} worker(s)" + (f" over {len(hosts)} host(s)" if hosts else ", this machine (loopback only)")
    )
    try:
        roles = [("scheduler", 0)] + [("server", i) for i in range(servers)] + [("worker", i) for i in range(workers)]
        for role, index in roles:
            node_env = {
                **env,
                "DMLC_ROLE" if role == "worker" else ROLE_ENV: role,
                "OMP_NUM_THREADS": threads if role == "worker" else "1",
            }
            argv = _node_argv(role, command)
            host = (hosts[index % len(hosts)] if role == "worker" else hosts[0]) if hosts else None
            if host:
                if not interface:  # each node binds the address the hosts file gives its host
                    node_env["DMLC_NODE_HOST"] = host.address
                argv = remote_argv(ssh, host, argv, node_env, keepalive)
            node = _Process(role, index, argv, node_env, lock, log, host)
            log(f"launch: {node.label} started, pid {node.process.pid}" + (f" on {host.name}" if host else ""))
            nodes.append(node)
            if heartbeat:
                heartbeat.add(node.process.stdin)
        return _watch(nodes, grace, stop, log)
    finally:
        if heartbeat:
            heartbeat.stop()
        _stop_all(nodes, grace)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _watch(nodes: list[_Process], grace: float, stop: list[str], log: Callable[[str], None]) -> int:
    """Wait for the workers; on a failure or a stop signal end the job and say why."""
    workers = [n for n in nodes if n.role == "worker"]
    while True:
        if stop:
            log(f"launch: {stop[0]}: stopping the job")
            return 130
        failed = next((n for n in nodes if n.process.poll() not in (None, 0)), None)
        if failed is not None:
            others = [n for n in nodes if n is not failed and n.process.poll() is None]
            log(
                f"launch: {failed.name()} (pid {failed.process.pid}) {failed.how()}; stopping the other "
                f"{len(others)} process(es)"
            )
            return 1
        if all(n.process.poll() == 0 for n in workers):
            deadline = time.monotonic() + 2 * grace  # the scheduler and servers end when the workers have
            while time.monotonic() < deadline and any(n.process.poll() is None for n in nodes):
                time.sleep(0.1)
            for node in nodes:
                node.reader.join(timeout=grace)
            log("launch: every worker finished")
            return 0
        time.sleep(0.1)


def _stop_all(nodes: list[_Process], grace: float) -> None:
    """SIGTERM every node still running, then SIGKILL what is left after ``grace`` seconds."""
    for node in nodes:
        if node.process.poll() is None:
            node.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for node in nodes:
        try:
            node.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            node.signal(signal.SIGKILL)
            node.process.wait()
