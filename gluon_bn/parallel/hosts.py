"""A job's other hosts: the hosts file, each host's address, and the ssh command lines that reach them.

Every remote node runs under ``tether.py``, so it dies with its ssh session; ssh itself runs with
keep-alives, so a host cut off from the launcher ends its session within a few keep-alives; and
before anything starts, each host is asked over ssh whether it has the address (or interface) its
nodes will bind to, so a wrong hosts file stops the job in one line rather than hanging it.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import UsageError
from .tether import MISSED_BEATS

__all__ = ["Host", "Heartbeat", "check_hosts", "read_hosts", "remote_argv"]

_HOST = re.compile(r"^[A-Za-z0-9._@-]+$")
#: The variables a remote node is given: the job's own, and the threads, MXNet and ps-lite settings.
HANDED_ON = ("DMLC_", "PS_", "OMP_", "MXNET_", "PYTHONUNBUFFERED", "GLUON_BN_")
#: Run on each remote host by path (it imports nothing of gluon-bn), so it starts in milliseconds.
TETHER = Path(__file__).resolve().parent / "tether.py"


@dataclass(frozen=True)
class Host:
    """One line of the hosts file: what ssh is given, and the IPv4 address the host's nodes bind to."""

    name: str
    address: str
    line: int


def _address(name: str, path: str, line: int) -> str:
    """The IPv4 address of ``name`` (``user@`` aside): ps-lite binds to addresses only."""
    bare = name.rsplit("@", 1)[-1]
    try:
        return socket.gethostbyname(bare)
    except OSError:
        raise UsageError(
            f"--hosts {path}, line {line}: cannot resolve {bare!r} here; write the host's IP address"
        ) from None


def read_hosts(path: str) -> list[Host]:
    """The hosts named in ``path``, one per line (blank lines and ``#`` comments skipped)."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"--hosts {path}: cannot read it ({getattr(exc, 'strerror', None) or exc.reason}); "
            "give a text file with one host per line"
        ) from None
    hosts = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if not _HOST.match(text):
            raise UsageError(
                f"--hosts {path}, line {number}: {text!r} is not a host name; write one host "
                "(name, address or user@host) per line"
            )
        hosts.append(Host(text, _address(text, path, number), number))
    if not hosts:
        raise UsageError(f"--hosts {path}: no host in it; write one host per line")
    return hosts


def ssh_argv(ssh: str, keepalive: float) -> list[str]:
    """``ssh`` as argv; when it is OpenSSH, with keep-alives every ``keepalive`` s, given up after as many
    unanswered ones as a tether waits for, and no password prompt (options you give in ``ssh`` come
    first, and ssh keeps the first value of each)."""
    argv = shlex.split(ssh)
    if Path(argv[0]).name == "ssh":
        argv += [
            "-o",
            "BatchMode=yes",
            "-o",
            f"ServerAliveInterval={keepalive:g}",
            "-o",
            f"ServerAliveCountMax={MISSED_BEATS}",
            "-o",
            f"ConnectTimeout={max(5, 2 * keepalive):g}",
        ]
    return argv


def remote_argv(ssh: list[str], host: Host, argv: list[str], env: dict, beat: float) -> list[str]:
    """``argv`` with ``env``'s job settings on ``host``, in this folder (the same checkout must be there), tethered."""
    settings = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k.startswith(HANDED_ON))
    tethered = [sys.executable, str(TETHER), "--beat", f"{beat:g}", "--", *argv]
    return [*ssh, host.name, f"cd {shlex.quote(os.getcwd())} && env {settings} {shlex.join(tethered)}"]


def _check_one(ssh: list[str], host: Host, interface: str | None, path: str, timeout: float) -> str | None:
    """Why ``host`` cannot take part (unreachable, or without its address or interface); None when it can."""
    probe = [sys.executable, str(TETHER), "--check", host.address, *(["--interface", interface] if interface else [])]
    argv = [*ssh, host.name, f"cd {shlex.quote(os.getcwd())} && {shlex.join(probe)}"]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"--hosts {path}, line {host.line}: {host.name} did not answer over ssh within {timeout:g} s"
    said = (done.stdout.strip() or done.stderr.strip() or "nothing said").splitlines()[-1]
    if done.returncode == 0:
        return None
    if done.returncode == 2:
        fix = "check the interface's name" if interface else "write an address of one of its interfaces"
        return f"--hosts {path}, line {host.line}: {said}; {fix}"
    return (
        f"--hosts {path}, line {host.line}: cannot run gluon-bn on {host.name} over ssh ({said}); "
        f"it needs passwordless ssh and this checkout at {os.getcwd()}"
    )


def check_hosts(ssh: list[str], hosts: list[Host], interface: str | None, path: str, timeout: float) -> None:
    """Ask every host at once whether it can run its nodes; raise UsageError naming the first that cannot."""
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        problems = list(pool.map(lambda h: _check_one(ssh, h, interface, path, timeout), hosts))
    problem = next((p for p in problems if p), None)
    if problem:
        raise UsageError(problem)


class Heartbeat:
    """Writes a byte to every remote node's ssh stdin each ``beat`` seconds: what keeps its tether going."""

    def __init__(self, beat: float):
        self.beat, self.pipes = beat, []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, pipe: IO[bytes]) -> None:
        self.pipes.append(pipe)

    def _run(self) -> None:
        while not self._stopped.wait(self.beat):
            for pipe in list(self.pipes):
                try:
                    pipe.write(b".")
                    pipe.flush()
                except (OSError, ValueError):  # that node has gone
                    self.pipes.remove(pipe)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
