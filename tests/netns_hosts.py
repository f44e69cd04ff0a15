"""Two real test hosts on this machine: network namespaces on a bridge, each running Debian's sshd.

Each host has its own address on a private /24, reached from the root namespace (where the tests
and the launcher run) through a bridge, and a decoy interface listed before it (as docker0 or a VPN
would be), with an address no other host can reach: a node that picks the first interface it finds,
rather than the address it is given, binds to the decoy and the job cannot form. sshd runs inside
each namespace on the host's address with a host key and an authorized key made for the test, and
the ssh client checks that host key. ``TestHosts.close`` removes everything, whatever happened.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


def _ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *(["netns", "exec", netns, "ip"] if netns else []), *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")


#: Set (as .ci/run does) to make a test that needs root or the test hosts fail where it would skip.
REQUIRE_ENV = "GLUON_BN_REQUIRE_ROOT_TESTS"


def skip_or_fail(reason: str | None) -> None:
    """Skip with ``reason``, or fail with it where ``$GLUON_BN_REQUIRE_ROOT_TESTS`` is 1; nothing when None."""
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} (and ${REQUIRE_ENV}=1 says these tests must run)", pytrace=False)
    pytest.skip(reason)


def why_not() -> str | None:
    """Why test hosts cannot be made here, with how to run them; None when they can."""
    if os.geteuid() != 0:
        return "the test hosts need root (network namespaces, sshd): run the suite as root, as CI does"
    if not (shutil.which("ip") and os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen")):
        return "the test hosts need iproute2, openssh-server and openssh-client: apt-get install them (.ci/run does)"
    return None


class TestHosts:
    """Two hosts, ``names[i]`` at ``addresses[i]``, reached with the ``ssh`` command line."""

    __test__ = False  # not a test class

    def __init__(self, folder: Path):
        tag = f"{os.getpid() % 100000:05d}"
        subnet = 10 + os.getpid() % 200
        self.folder = folder
        self.netns = [f"gbn{tag}h1", f"gbn{tag}h2"]
        self.links = [f"gbn{tag}v1", f"gbn{tag}v2"]  # each host's link, seen from the root namespace
        self.bridge = f"gbn{tag}br"
        self.addresses = [f"10.213.{subnet}.2", f"10.213.{subnet}.3"]
        self.decoys = [f"10.214.{subnet}.2", f"10.214.{subnet}.3"]
        self.sshd: list[subprocess.Popen] = []
        key = folder / "id_ed25519"
        self.ssh = (
            f"ssh -F /dev/null -i {key} -o IdentitiesOnly=yes -o UserKnownHostsFile={folder / 'known_hosts'} "
            "-o StrictHostKeyChecking=yes"
        )
        try:
            self._network(subnet)
            self._sshd(key)
        except BaseException:
            self.close()
            raise

    def _network(self, subnet: int) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"10.213.{subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for netns, link, address, decoy in zip(self.netns, self.links, self.addresses, self.decoys):
            _ip("netns", "add", netns)
            _ip("link", "set", "lo", "up", netns=netns)
            _ip("link", "add", "decoy0", "type", "veth", "peer", "name", "decoy1", netns=netns)
            _ip("addr", "add", f"{decoy}/24", "dev", "decoy0", netns=netns)
            for end in ("decoy0", "decoy1"):
                _ip("link", "set", end, "up", netns=netns)
            _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns)
            _ip("link", "set", link, "master", self.bridge, "up")
            _ip("addr", "add", f"{address}/24", "dev", "eth0", netns=netns)
            _ip("link", "set", "eth0", "up", netns=netns)

    def _sshd(self, key: Path) -> None:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (self.folder / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
        known = []
        for i, (netns, address) in enumerate(zip(self.netns, self.addresses)):
            host_key = self.folder / f"host{i + 1}_key"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
            known.append(f"{address} {Path(f'{host_key}.pub').read_text().strip()}")
            config = self.folder / f"sshd{i + 1}.conf"
            config.write_text(
                "\n".join(
                    [
                        f"ListenAddress {address}",
                        "Port 22",
                        f"HostKey {host_key}",
                        f"AuthorizedKeysFile {self.folder / 'authorized_keys'}",
                        f"PidFile {self.folder}/sshd{i + 1}.pid",
                        "PermitRootLogin prohibit-password",
                        "PasswordAuthentication no",
                        "KbdInteractiveAuthentication no",
                        "UsePAM no",
                        "StrictModes no",
                        "LogLevel ERROR",
                        "",
                    ]
                )
            )
            self.sshd.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", netns, SSHD, "-D", "-e", "-f", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=open(self.folder / f"sshd{i + 1}.log", "wb"),
                )
            )
        (self.folder / "known_hosts").write_text("\n".join(known) + "\n")
        for address in self.addresses:
            self._wait_for(address)

    @staticmethod
    def _wait_for(address: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((address, 22), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd on {address} did not start")
                time.sleep(0.1)

    def hosts_file(self, path: Path, lines: list[str] | None = None) -> Path:
        """A hosts file naming both hosts (or ``lines``)."""
        path.write_text("\n".join(lines or [f"root@{a}" for a in self.addresses]) + "\n")
        return path

    def processes(self, netns: str, needle: str = "gluon_bn") -> list[tuple[int, str]]:
        """The processes in ``netns`` whose command line holds ``needle`` (sshd's own aside)."""
        pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()
        found = []
        for pid in pids:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if needle in cmdline:
                found.append((int(pid), cmdline))
        return found

    def left_running(self, timeout: float = 30) -> list[tuple[int, str]]:
        """The gluon-bn processes still running in any host after waiting up to ``timeout`` s for them to end."""
        deadline = time.monotonic() + timeout
        while True:
            left = [p for netns in self.netns for p in self.processes(netns)]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.5)

    def listening(self, netns: str) -> list[str]:
        """The local addresses of the TCP sockets python processes listen on in ``netns``."""
        out = subprocess.run(["ip", "netns", "exec", netns, "ss", "-Hltnp"], capture_output=True, text=True).stdout
        return [line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if "python" in line]

    def cut(self, host: int, down: bool = True) -> None:
        """Take host ``host``'s link down (a network cut), or up again."""
        _ip("link", "set", self.links[host], "down" if down else "up")

    def close(self) -> None:
        for netns in self.netns:
            for pid, _ in self.processes(netns, needle=""):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for sshd in self.sshd:
            sshd.kill()
            sshd.wait()
        for netns in self.netns:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        for link in [*self.links, self.bridge]:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
