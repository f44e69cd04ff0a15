"""``gluon-bn launch --hosts`` on two real hosts: network namespaces on this machine, each with its own
address and Debian's sshd, reached with OpenSSH's client (see ``netns_hosts``).

The job gives the one-machine job's numbers, and each node binds its host's address (not the decoy
interface listed first); a wrong address stops it before anything starts; kill -9 of the launcher,
Ctrl-C and a failed worker leave no gluon-bn process on any host; a network cut stops the job within
seconds, naming the host, and ``--resume`` then ends with the uninterrupted numbers.
"""

import re
import signal
import subprocess
import time

import pytest
from jobs import alive, history, job_env, launch_argv, launch_until, pids
from netns_hosts import TestHosts, skip_or_fail, why_not

from gluon_bn.runtime import threads

SETTINGS = [
    "--model",
    "gluon",
    "--kvstore",
    "dist_sync",
    "--num-train",
    "4096",
    "--num-test",
    "1000",
    "--batch-size",
    "256",
    "--seed",
    "5",
]
KEEPALIVE = "2"  # seconds: a cut is noticed after 3 unanswered keep-alives

pytestmark = pytest.mark.system  # as root: needs namespaces, sshd or a tmpfs (conftest adds slow)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """The two test hosts, for the whole module (skipped, or failed in CI, where they cannot be made)."""
    skip_or_fail(why_not())
    made = TestHosts(tmp_path_factory.mktemp("hosts"))
    try:
        yield made
    finally:
        made.close()


def _env(fault=None):
    """Both "hosts" share this machine's CPUs: one operator thread per worker unless you set them."""
    return job_env(fault, **({} if threads.given_by_user() else {threads.ENV: "1"}))


def _argv(out, epochs, hosts=None, hosts_file=None, extra=()):
    where = ["--hosts", str(hosts_file), "--ssh", hosts.ssh, "--keepalive", KEEPALIVE] if hosts else []
    return launch_argv(*SETTINGS, "--epochs", str(epochs), "--out", str(out), launch=["--workers", "2", *where, *extra])


def _run(argv, fault=None):
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=_env(fault))


@pytest.fixture
def start():
    """``start(argv, until)``: ``jobs.launch_until`` with this module's environment; a launcher that
    outlives its test is killed."""
    launchers = []

    def run(argv, until: str):
        launcher, lines = launch_until(argv, until, _env())
        launchers.append(launcher)
        return launcher, lines

    yield run
    for launcher in launchers:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


@pytest.fixture(scope="module")
def one_machine(hosts, tmp_path_factory):  # after ``hosts``: skipped with it
    out = tmp_path_factory.mktemp("one-machine")
    done = _run(_argv(out, 3))
    assert done.returncode == 0, done.stdout[-3000:]
    return history(out, "gluon")


def test_two_hosts_give_the_one_machine_numbers_and_each_node_binds_its_host_address(
    one_machine, hosts, tmp_path, start
):
    hosts_file = hosts.hosts_file(tmp_path / "hosts")
    launcher, lines = start(_argv(tmp_path, 3, hosts, hosts_file), "[worker 0] epoch 1,")
    listening = [hosts.listening(netns) for netns in hosts.netns]
    rest, _ = launcher.communicate(timeout=300)
    text = "".join(lines) + rest
    assert launcher.returncode == 0, text[-3000:]
    assert f"worker ? started, pid {pids(text)[-1]} on root@{hosts.addresses[1]}" in text
    # the scheduler, the server and worker 0 on host 1, worker 1 on host 2; each on its host's test address
    assert listening == [[hosts.addresses[0]] * 3, [hosts.addresses[1]]], listening
    assert history(tmp_path, "gluon") == one_machine


def test_a_wrong_address_or_interface_stops_the_job_before_it_starts(hosts, tmp_path):
    """Each in one line, exit 2, before any node starts: an address this machine cannot reach; one that
    reaches host 2 (through ssh's HostName, as through NAT) but that host 2 does not have; an interface
    the hosts do not have."""
    hosts_file = tmp_path / "hosts"

    def refused(lines, ssh=hosts.ssh, extra=()):
        hosts.hosts_file(hosts_file, lines)
        argv = _argv(tmp_path, 1, hosts, hosts_file, extra)
        argv[argv.index("--ssh") + 1] = ssh
        done = _run(argv)
        assert done.returncode == 2 and done.stdout == "", done.stdout[-2000:]
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        return done.stderr.strip().removeprefix(f"gluon-bn: error: --hosts {hosts_file}, ")

    first, second = f"root@{hosts.addresses[0]}", f"root@{hosts.addresses[1]}"
    unreachable = hosts.decoys[1]
    assert refused([first, unreachable]).startswith(f"line 2: cannot run gluon-bn on {unreachable} over ssh (")
    nat = hosts.addresses[1].rsplit(".", 1)[0] + ".99"  # nobody's address, reaching host 2
    config = tmp_path / "ssh_config"
    config.write_text(f"Host {nat}\n  HostName {hosts.addresses[1]}\n  HostKeyAlias {hosts.addresses[1]}\n")
    said = refused([first, f"root@{nat}"], ssh=hosts.ssh.replace("-F /dev/null", f"-F {config}"))
    assert re.fullmatch(
        rf"line 2: {re.escape(nat)} is not an address of \S+ \(Cannot assign requested address\); "
        "write an address of one of its interfaces",
        said,
    ), said
    said = refused([first, second], extra=["--interface", "wlan7"])
    assert re.fullmatch(
        r"line \d: \S+ has no interface 'wlan7' \(it has lo, decoy1, decoy0, eth0\); "
        "check the interface's name",
        said,
    ), said


def _kill_launcher(launcher):
    launcher.kill()


def _ctrl_c(launcher):
    launcher.send_signal(signal.SIGINT)


@pytest.mark.parametrize(
    "stop, fault",
    [
        (_kill_launcher, None),
        (_ctrl_c, None),
        (None, "kill@batch:model=gluon,epoch=1,batch=3,rank=1"),  # a worker dies
    ],
    ids=["kill -9 of the launcher", "Ctrl-C", "a failed worker"],
)
def test_nothing_is_left_running_on_any_host(stop, fault, hosts, tmp_path, start):
    hosts_file = hosts.hosts_file(tmp_path / "hosts")
    argv = _argv(tmp_path, 3, hosts, hosts_file)
    if fault:
        done = _run(argv, fault)
        assert done.returncode == 1
        on = "|".join(re.escape(a) for a in hosts.addresses)  # ps-lite ranks the workers as they connect
        assert re.search(
            rf"^launch: worker 1 on root@({on}) \(pid \d+\) was killed by "
            r"SIGKILL; stopping the other 3 process\(es\)$",
            done.stdout,
            re.M,
        ), done.stdout[-3000:]
        text = done.stdout
    else:
        launcher, lines = start(argv, "[worker 0] training on")
        assert all(hosts.processes(netns) for netns in hosts.netns)  # the job runs on both hosts
        stop(launcher)
        rest, _ = launcher.communicate(timeout=60)
        text = "".join(lines) + rest
    assert hosts.left_running(timeout=30) == []
    assert not [p for p in pids(text) if alive(p)]  # nor any of the launcher's ssh clients


def test_a_network_cut_stops_the_job_within_seconds_and_resume_continues(one_machine, hosts, tmp_path, start):
    hosts_file = hosts.hosts_file(tmp_path / "hosts")
    argv = _argv(tmp_path, 3, hosts, hosts_file)
    launcher, lines = start(argv, "[worker 0] epoch 1,")
    hosts.cut(1)
    cut_at = time.monotonic()
    try:
        rest, _ = launcher.communicate(timeout=60)
        noticed = time.monotonic() - cut_at
        text = "".join(lines) + rest
        assert launcher.returncode == 1, text[-3000:]
        cut = re.escape(hosts.addresses[1])
        assert re.search(
            rf"^launch: worker [01] on root@{cut} \(pid \d+\) lost its ssh connection to root@{cut} "
            r"\(ssh exited 255; last line: Timeout, server \S+ not responding\.\); stopping the "
            r"other 3 process\(es\)$",
            text,
            re.M,
        ), text[-3000:]
        assert noticed < 30, noticed
        print(f"the cut was noticed after {noticed:.1f} s (keep-alive {KEEPALIVE} s)")
        assert hosts.left_running(timeout=30) == []  # host 2's tether, unheard from, stopped its worker
        assert not [p for p in pids(text) if alive(p)]
    finally:
        hosts.cut(1, down=False)
    resumed = _run([*argv, "--resume"])
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "[worker 0] resuming from" in resumed.stdout
    assert history(tmp_path, "gluon") == one_machine
