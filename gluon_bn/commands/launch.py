"""``gluon-bn launch``: a data-parallel job over MXNet's parameter server, started, watched and stopped as one.

Options and config in: how many workers and servers, where (this machine on loopback, or ``--hosts``
over ssh), and the gluon-bn command each worker runs with ``--kvstore dist_sync``. The config and the
hosts are checked before any node starts; then ps-lite's scheduler, the servers and the workers run
under :mod:`gluon_bn.parallel.supervisor`, their output prefixed with role and rank; the exit status
and the workers' record out.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from ..parallel.hosts import check_hosts, read_hosts, ssh_argv
from ..parallel.supervisor import run_job
from ..runs.arguments import config_from, positive
from ..runs.settings import Settings

__all__ = ["LaunchConfig", "add_arguments", "config", "out_folder", "run"]

#: The commands a job can run.
COMMANDS = ("reproduce",)
#: More workers or servers than this is a typo: each is a process that imports MXNet.
MAX_NODES = 1024
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


HELP = "run a training command data parallel over MXNet's parameter server (kvstore dist_sync)"
USAGE = (
    "gluon-bn launch [-h] --workers N [--servers S] [--hosts FILE] [--port P] [--interface NAME] "
    "[--keepalive SECONDS] -- COMMAND ARGS..."
)
DESCRIPTION = (
    "Start ps-lite's scheduler, the servers and N workers, each running COMMAND (with "
    "--kvstore dist_sync); prefix their output with role and rank; stop the whole job when "
    "any process fails or on Ctrl-C, and leave no process behind. Without --hosts everything "
    "runs on this machine and listens on loopback only."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``gluon-bn launch`` options; the workers' command follows ``--``."""
    defaults = LaunchConfig()
    parser.add_argument("--workers", type=int, required=True, help="worker processes (each trains on its share)")
    parser.add_argument("--servers", type=int, default=defaults.servers, help="parameter-server processes")
    parser.add_argument(
        "--hosts",
        default=None,
        help="file with one host per line: workers go round-robin, "
        "the scheduler and servers on the first (started over --ssh)",
    )
    parser.add_argument("--port", type=positive(int), default=None, help="the scheduler's port (default: a free one)")
    parser.add_argument(
        "--ssh",
        default=defaults.ssh,
        help="how to run a command on a host (OpenSSH's ssh gets BatchMode and keep-alives added)",
    )
    parser.add_argument(
        "--interface",
        default=None,
        metavar="NAME",
        help="with --hosts: every node binds to NAME's address on its host (default: the address the hosts file gives)",
    )
    parser.add_argument(
        "--keepalive",
        type=float,
        default=defaults.keepalive,
        metavar="SECONDS",
        help="with --hosts: ssh keep-alive interval; a host unheard for 3 of them ends the job",
    )
    parser.add_argument(
        "job", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS", help="the workers' gluon-bn command"
    )


def config(args: argparse.Namespace) -> LaunchConfig:
    """The options as a config; the workers' command without its leading ``--``."""
    return config_from(LaunchConfig, args, command=args.job[1:] if args.job[:1] == ["--"] else args.job)


def out_folder(config: LaunchConfig) -> str:
    """The folder a job holds while it writes: its workers' ``--out``, their command checked before any node starts."""
    from . import parse  # gluon_bn.commands imports this module

    module, args = parse(config.validate().command)
    return module.config(args).resolved().validate().out


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


def _say(line: str) -> None:
    """The launcher's output: every line at once, so a job can be followed as it runs."""
    print(line, flush=True)


def run(config: LaunchConfig, log: Callable[[str], None] = _say) -> dict:
    """Run the job to its end: ``status`` 0 when every worker finished, non-zero (and the culprit named)
    otherwise; ``record`` the workers' record (their ``--out``'s ``reproduce.json``) when they finished."""
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
    status = run_job(
        config.command,
        workers=config.workers,
        servers=config.servers,
        env=base,
        hosts=hosts,
        ssh=ssh,
        interface=config.interface,
        keepalive=config.keepalive,
        grace=config.grace,
        log=log,
    )
    record = Path(out_folder(config)) / "reproduce.json" if status == 0 else None
    return {"status": status, "record": record if record is not None and record.is_file() else None}
