"""``gluon-bn launch``: a data-parallel job over MXNet's parameter server, started, watched and stopped as one.

Config in; ps-lite's scheduler, the servers and the workers (each a gluon-bn training command with
``--kvstore dist_sync``) started with MXNet's documented environment (``DMLC_ROLE``,
``DMLC_PS_ROOT_URI``/``PORT``, ``DMLC_NUM_SERVER``/``WORKER``); every line of their output prefixed
with the process's role and rank; the exit status out. When any process fails, the rest are stopped
within seconds and the launcher says which one and how. No process is left behind: each child runs
in its own process group, dies with the launcher (``PR_SET_PDEATHSIG``), and is killed on the way out;
on another host (``--hosts``) it runs under ``parallel.tether``, which ends it with its ssh session,
binds the address the hosts file gives its host, and is reached by ssh with keep-alives, so a cut
host ends the job within a few of them (``parallel.hosts``).
MXNet's shipped ``tools/launch.py`` is not used: its dmlc tracker calls ``Thread.isAlive()``, gone
since Python 3.9, and leaves its scheduler running.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..parallel.hosts import Heartbeat, Host, check_hosts, read_hosts, remote_argv, ssh_argv
from ..parallel.ps_node import ROLE_ENV
from ..parallel.tether import die_with_parent
from ..reliability.errors import UsageError
from ..runs.settings import Settings
from ..runtime import threads as thread_setup

__all__ = ["LaunchConfig", "run"]

#: The commands a job can run, and what each worker's first line says about its rank.
COMMANDS = ("reproduce",)
_RANK_LINE = re.compile(r"^kvstore \S+: worker rank (\d+) of \d+$")
#: More workers or servers than this is a typo: each is a process that imports MXNet.
MAX_NODES = 1024
_SSH_FAILED = 255  # ssh's exit status for its own failures (the host unreachable, the connection lost)
_INTERFACE = re.compile(r"^[A-Za-z0-9._@:-]{1,15}$")


@dataclass
class LaunchConfig(Settings):
    """A job: how many workers and servers, where, and the gluon-bn command each worker runs."""

    workers: int = 2
    servers: int = 1
    command: list[str] = field(default_factory=list)
    hosts: str | None = None  # a file with one host per line; None: this machine, on loopback
    port: int | None = None  # the scheduler's port; None: a free one
    ssh: str = "ssh"  # how to start a process on another host
    interface: str | None = None  # with --hosts: bind every node to this interface's address, not the file's
    keepalive: float = 5.0  # with --hosts: seconds between ssh keep-alives and the tethers' heartbeats
    grace: float = 5.0  # seconds a stopped process gets before kill -9

    def validate(self) -> "LaunchConfig":
        for name in ("workers", "servers"):
            if not 1 <= getattr(self, name) <= MAX_NODES:
                raise UsageError(f"--{name} must be from 1 to {MAX_NODES}, got {getattr(self, name)}")
        if not self.command or self.command[0] not in COMMANDS:
            raise UsageError(
                "give the command each worker runs after --, e.g. "
                "gluon-bn launch --workers 2 -- reproduce --model gluon --kvstore dist_sync"
                + (f" ({self.command[0]!r} cannot run as a job; choose {', '.join(COMMANDS)})" if self.command else "")
            )
        if "--kvstore" not in self.command:
            raise UsageError("the workers' command needs --kvstore dist_sync, or each would train alone")
        if not 0.5 <= self.keepalive <= 3600:  # NaN too
            raise UsageError(f"--keepalive must be from 0.5 to 3600 seconds, got {self.keepalive!r}")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise UsageError(f"--port must be from 1 to 65535, got {self.port}")
        try:
            ssh = shlex.split(self.ssh)
        except ValueError as exc:
            raise UsageError(f"--ssh {self.ssh!r}: {exc}; quote it as you would in a shell") from None
        if not ssh:
            raise UsageError("--ssh is empty: give the command that runs a command on a host, e.g. ssh")
        if self.interface is not None and not _INTERFACE.match(self.interface):
            raise UsageError(f"--interface {self.interface!r} is not an interface name (such as eth0)")
        return self


def _free_port(port: int | None, address: str) -> int:
    """``port`` if nothing listens there, else a free one the system picks (``port`` None)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, port or 0))
        except OSError:
            raise UsageError(
                f"--port {port}: already in use on {address}; choose another, "
                "or leave --port out and a free one is picked"
            ) from None
        return probe.getsockname()[1]


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


def _say(line: str) -> None:
    """The launcher's output: every line at once, so a job can be followed as it runs."""
    print(line, flush=True)


def worker_threads(per_host: int) -> str:
    """Each worker's operator threads: your ``$OMP_NUM_THREADS``, else its share of this machine's CPUs.

    Not the one-thread-per-CPU that the launcher's own ``import gluon_bn`` put into ``os.environ``:
    handed on, that gives every worker all the CPUs, and their OpenMP teams then fight over them.
    """
    if thread_setup.given_by_user():
        return os.environ[thread_setup.ENV]
    return str(max(1, (os.cpu_count() or 1) // per_host))


def run(config: LaunchConfig, log: Callable[[str], None] = _say) -> int:
    """Run the job to its end; 0 when every worker finished, non-zero (and the culprit named) otherwise."""
    config.validate()
    hosts = read_hosts(config.hosts) if config.hosts else None
    ssh = ssh_argv(config.ssh, config.keepalive)
    root = hosts[0].address if hosts else "127.0.0.1"
    port = _free_port(config.port, "0.0.0.0" if hosts else "127.0.0.1")
    if hosts:
        check_hosts(ssh, hosts, config.interface, config.hosts, timeout=max(30.0, 4 * config.keepalive))
    base = {k: v for k, v in os.environ.items() if k != "PORT"}  # ps-lite binds every node to $PORT if set
    base.update(
        DMLC_PS_ROOT_URI=root,
        DMLC_PS_ROOT_PORT=str(port),
        DMLC_NUM_SERVER=str(config.servers),
        DMLC_NUM_WORKER=str(config.workers),
        PYTHONUNBUFFERED="1",
    )
    if not hosts:  # one machine: every node listens on loopback only
        base.update(DMLC_INTERFACE="lo", DMLC_NODE_HOST="127.0.0.1")
    elif config.interface:
        base["DMLC_INTERFACE"] = config.interface
    threads = worker_threads(-(-config.workers // len(hosts or [root])))
    lock = threading.Lock()
    nodes: list[_Process] = []
    stop: list[str] = []
    heartbeat = Heartbeat(config.keepalive) if hosts else None
    previous = {
        sig: signal.signal(sig, lambda s, _: stop.append(signal.Signals(s).name))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    log(
        f"launch: scheduler on {root}:{port}, {config.servers} server(s), {config.workers} worker(s)"
        + (f" over {len(hosts)} host(s)" if hosts else ", this machine (loopback only)")
    )
    try:
        roles = (
            [("scheduler", 0)]
            + [("server", i) for i in range(config.servers)]
            + [("worker", i) for i in range(config.workers)]
        )
        for role, index in roles:
            env = {
                **base,
                "DMLC_ROLE" if role == "worker" else ROLE_ENV: role,
                "OMP_NUM_THREADS": threads if role == "worker" else "1",
            }
            argv = _node_argv(role, config.command)
            host = (hosts[index % len(hosts)] if role == "worker" else hosts[0]) if hosts else None
            if host:
                if not config.interface:  # each node binds the address the hosts file gives its host
                    env["DMLC_NODE_HOST"] = host.address
                argv = remote_argv(ssh, host, argv, env, config.keepalive)
            node = _Process(role, index, argv, env, lock, log, host)
            log(f"launch: {node.label} started, pid {node.process.pid}" + (f" on {host.name}" if host else ""))
            nodes.append(node)
            if heartbeat:
                heartbeat.add(node.process.stdin)
        return _watch(nodes, config.grace, stop, log)
    finally:
        if heartbeat:
            heartbeat.stop()
        _stop_all(nodes, config.grace)
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
