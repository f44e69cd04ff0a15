"""A job node on another host, tied to the launcher's ssh session: when the session goes, so does the node.

``gluon-bn launch --hosts`` runs ``python .../tether.py --beat S -- NODE ARGV...`` on each host over ssh.
A plain ``ssh host cmd`` does not pass on the launcher's end: the remote process keeps running,
perhaps for ever if it is blocked in ps-lite. The tether starts the node in its own process group
and keeps it only while the launcher is heard from: it reads the heartbeat the launcher writes to
ssh's stdin every ``S`` seconds, and stops the node (SIGTERM, then SIGKILL) on end of file (the
launcher or its ssh died), on a silence of ``3 S`` (the network between them is cut) and on SIGHUP or
SIGTERM. ``--check ADDRESS [--interface NAME]`` only says, before a job starts, whether this host has
that address (or that interface), so a wrong hosts file stops the job in one line.

This file runs as a script on the remote host, so it imports nothing but the standard library.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import select
import signal
import socket
import subprocess
import sys
import time

#: Heartbeats missed before the launcher counts as gone.
MISSED_BEATS = 3
#: Seconds a stopped node gets before SIGKILL.
GRACE = 5.0


def check(address: str | None, interface: str | None) -> str | None:
    """Why this host cannot run a node at ``address`` (or on ``interface``); None when it can."""
    if interface is not None:
        try:
            socket.if_nametoindex(interface)
        except OSError:
            names = ", ".join(name for _, name in socket.if_nameindex())
            return f"{socket.gethostname()} has no interface {interface!r} (it has {names})"
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError as exc:
            return f"{address} is not an address of {socket.gethostname()} ({exc.strerror})"
    return None


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (called between fork and exec)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _stop(node: subprocess.Popen) -> None:
    """SIGTERM the node's process group, SIGKILL what is left after ``GRACE`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(node.pid, sig)
        except ProcessLookupError:
            return
        try:
            node.wait(timeout=GRACE)
            return
        except subprocess.TimeoutExpired:
            continue


def run(beat: float, argv: list[str]) -> int:
    """Run ``argv`` while heartbeats arrive on stdin; its exit status, or 1 when the launcher was lost."""
    node = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)
    lost: list[str] = []
    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _: lost.append(signal.Signals(s).name))
    heard = time.monotonic()
    while node.poll() is None and not lost:
        ready, _, _ = select.select([sys.stdin], [], [], beat)
        if ready:
            if not os.read(sys.stdin.fileno(), 4096):
                lost.append("the launcher's session ended")
            heard = time.monotonic()
        elif time.monotonic() - heard > MISSED_BEATS * beat:
            lost.append(f"no heartbeat from the launcher for {time.monotonic() - heard:.0f} s")
    if not lost:  # a signal's death as a shell reports it: ssh passes on an exit status, not a signal
        return node.returncode if node.returncode >= 0 else 128 - node.returncode
    _stop(node)
    print(f"tether: {lost[0]}: stopped the node on {socket.gethostname()}", file=sys.stderr, flush=True)
    return 1


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tether.py", description=__doc__.splitlines()[0])
    parser.add_argument("--beat", type=float, default=5.0, help="seconds between the launcher's heartbeats")
    parser.add_argument("--check", metavar="ADDRESS", help="only check that this host has ADDRESS")
    parser.add_argument("--interface", help="with --check: only check that this host has this interface")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    options = parser.parse_args(args)
    if options.check is not None:
        problem = check(options.check, options.interface)
        if problem:
            print(problem, flush=True)
        return 2 if problem else 0
    argv = options.argv[1:] if options.argv[:1] == ["--"] else options.argv
    if not argv:
        parser.error("give the node's command after --")
    return run(options.beat, argv)


if __name__ == "__main__":
    sys.exit(main())
