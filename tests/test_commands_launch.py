"""``gluon-bn launch``: a job over MXNet's parameter server on real data; its failures stop it whole, leave
nothing running, and ``--resume`` continues; bad launches are one line and exit 2."""

import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest
from jobs import alive, history, job_env, launch_argv, launch_until, pids

from gluon_bn.runtime import threads

SETTINGS = ["--num-train", "1024", "--num-test", "256", "--batch-size", "256", "--seed", "5", "--epochs", "2"]


def _launch(out, *job, workers="2", extra=(), fault=None):
    return launch_argv(
        "--kvstore", "dist_sync", "--out", str(out), *SETTINGS, *job, launch=["--workers", workers, *extra]
    )


def _run(out, *job, fault=None, **kwargs):
    return subprocess.run(_launch(out, *job, **kwargs), capture_output=True, text=True, timeout=300, env=job_env(fault))


def _losses(out, model):
    record = json.loads((out / "reproduce.json").read_text())
    return [e["loss"] for e in record["results"][model]["history"]], record


@pytest.mark.slow
def test_two_workers_train_the_no_bn_lenet_as_one_process_does(tmp_path, gluon_bn_cli):
    """The plumbing: each global batch holds the same examples, split across the workers, and the
    servers sum their gradients, so the losses are one process's to float rounding."""
    one = gluon_bn_cli("reproduce", "--model", "none", "--ctx", "cpu", "--out", str(tmp_path / "one"), *SETTINGS)
    assert one.returncode == 0, one.stderr
    job = _run(tmp_path / "job", "--model", "none")
    assert job.returncode == 0, job.stdout[-3000:]
    assert re.search(r"^\[worker 1\] kvstore dist_sync: worker rank 1 of 2$", job.stdout, re.M)
    assert "launch: every worker finished" in job.stdout
    want, _ = _losses(tmp_path / "one", "none")
    got, record = _losses(tmp_path / "job", "none")
    assert got == pytest.approx(want, rel=1e-5)
    assert record["distributed"] == {"kvstore": "dist_sync", "workers": 2, "servers": 1}
    assert [len(e["worker_train_s"]) for e in record["results"]["none"]["workers"]] == [2, 2]
    assert not [p for p in pids(job.stdout) if alive(p)]
    share = os.environ[threads.ENV] if threads.given_by_user() else str(max(1, (os.cpu_count() or 1) // 2))
    assert record["environment"]["threads"]["operator_threads"] == int(share)  # each worker its share of the CPUs


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("job")
    job = _run(out, "--model", "gluon")
    assert job.returncode == 0, job.stdout[-3000:]
    losses, record = _losses(out, "gluon")
    epochs = record["results"]["gluon"]["workers"]
    assert all(0 < e["bn_spread"] < 1 for e in epochs)  # the workers' statistics differ, and are averaged
    for e, line in zip(epochs, record["results"]["gluon"]["history"]):
        assert e["test_acc"]["averaged"] == line["test_acc"]  # the test pass used the averaged statistics
        assert len(e["test_acc"]["per_worker"]) == 2 and 0 < e["test_acc"]["re_estimated"] <= 1
    return history(out, "gluon")


@pytest.mark.slow
def test_a_worker_killed_mid_epoch_stops_the_job_and_resume_continues(uninterrupted, tmp_path):
    started = time.monotonic()
    killed = _run(tmp_path, "--model", "gluon", fault="kill@batch:model=gluon,epoch=2,batch=2,rank=1")
    assert time.monotonic() - started < 120
    assert killed.returncode == 1
    assert re.search(
        r"^launch: worker 1 \(pid \d+\) was killed by SIGKILL; stopping the other 3 process\(es\)$", killed.stdout, re.M
    ), killed.stdout[-2000:]
    assert not [p for p in pids(killed.stdout) if alive(p)]
    resumed = _run(tmp_path, "--model", "gluon", "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "[worker 0] resuming from" in resumed.stdout and "gluon after epoch 1" in resumed.stdout
    assert history(tmp_path, "gluon") == uninterrupted


def _launch_until(out, start: str):
    """A running job of the Gluon LeNet, and its output up to the first line that starts with ``start``."""
    return launch_until(_launch(out, "--model", "gluon"), start, job_env())


@pytest.mark.slow
def test_the_server_killed_stops_the_job_within_seconds_and_resume_continues(uninterrupted, tmp_path):
    launcher, lines = _launch_until(tmp_path, "[worker 0] epoch 1,")
    server = int(re.search(r"server 0 started, pid (\d+)", "".join(lines)).group(1))
    os.kill(server, signal.SIGKILL)
    killed_at = time.monotonic()
    rest, _ = launcher.communicate(timeout=60)
    assert time.monotonic() - killed_at < 30
    text = "".join(lines) + rest
    assert launcher.returncode == 1
    assert re.search(rf"^launch: server 0 \(pid {server}\) was killed by SIGKILL", text, re.M), text[-2000:]
    assert not [p for p in pids(text) if alive(p)]
    resumed = _run(tmp_path, "--model", "gluon", "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert history(tmp_path, "gluon") == uninterrupted


@pytest.mark.slow
def test_ctrl_c_stops_the_whole_job(tmp_path):
    launcher, lines = _launch_until(tmp_path, "[worker 0] training on")
    launcher.send_signal(signal.SIGINT)
    rest, _ = launcher.communicate(timeout=60)
    text = "".join(lines) + rest
    assert launcher.returncode == 130 and "launch: SIGINT: stopping the job" in text
    assert not [p for p in pids(text) if alive(p)]


def test_a_port_in_use_is_refused_in_one_line(tmp_path, gluon_bn_cli):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = gluon_bn_cli(
            "launch",
            "--workers",
            "2",
            "--port",
            str(port),
            "--",
            "reproduce",
            "--model",
            "gluon",
            "--kvstore",
            "dist_sync",
            "--out",
            str(tmp_path),
        )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"gluon-bn: error: --port {port}: already in use on 127.0.0.1; choose "
        "another, or leave --port out and a free one is picked"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers", "0"], "--workers must be from 1 to 1024, got 0"),
        (["--workers", "2", "--hosts", "HOSTS"], "line 2: 'bad host!' is not a host name"),
        (["--workers", "2", "--hosts", "MISSING"], "cannot read it"),
    ],
)
def test_bad_launches_are_one_line_and_exit_2(args, message, tmp_path, gluon_bn_cli):
    (tmp_path / "HOSTS").write_text("localhost\nbad host!\n")
    args = [str(tmp_path / a) if a in ("HOSTS", "MISSING") else a for a in args]
    result = gluon_bn_cli(
        "launch", *args, "--", "reproduce", "--model", "gluon", "--kvstore", "dist_sync", "--out", str(tmp_path)
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr


@pytest.mark.slow
def test_hosts_are_reached_through_ssh(tmp_path):
    """Two hosts, reached through a stand-in for ssh that runs the command here."""
    ssh = tmp_path / "ssh"
    ssh.write_text(
        '#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift 2; done  # the options the launcher adds\n'
        'echo "ssh to $1" >&2\nshift\nexec sh -c "$1"\n'
    )
    ssh.chmod(0o755)
    (tmp_path / "hosts").write_text("# the job's machines\nlocalhost\n127.0.0.1\n")
    job = _run(tmp_path / "out", "--model", "none", extra=["--hosts", str(tmp_path / "hosts"), "--ssh", str(ssh)])
    assert job.returncode == 0, job.stdout[-3000:]
    assert "over 2 host(s)" in job.stdout and "on 127.0.0.1" in job.stdout
    assert job.stdout.count("ssh to ") == 4  # scheduler, server, two workers
    assert (tmp_path / "out" / "reproduce.json").is_file()
