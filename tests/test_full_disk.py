"""A full disk under ``--out``: a checkpoint or the record that runs out of space stops the run with one
line naming the path, exit 1; what was written before stays whole, and ``--resume`` continues.

The disk is a small tmpfs the test mounts (so these tests need root; CI runs as root), filled at an
exact point of the write by the ``fill`` fault.
"""

import json
import os
import subprocess

import fault_hook
import pytest
from netns_hosts import skip_or_fail

SETTINGS = [
    "--model",
    "both",
    "--num-train",
    "1024",
    "--num-test",
    "256",
    "--batch-size",
    "256",
    "--seed",
    "3",
    "--epochs",
    "2",
]

pytestmark = pytest.mark.system  # as root: namespaces, sshd or a tmpfs (conftest marks them slow too)


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs, mounted for this test only."""
    skip_or_fail("mounts a small tmpfs: run the suite as root, as CI does" if os.geteuid() != 0 else None)
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def _histories(out):
    record = json.loads((out / "reproduce.json").read_text())
    return {
        name: [{k: v for k, v in e.items() if k != "time"} for e in run["history"]]
        for name, run in record["results"].items()
    }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, gluon_bn_cli):
    out = tmp_path_factory.mktemp("whole")
    done = gluon_bn_cli("reproduce", *SETTINGS, "--out", str(out))
    assert done.returncode == 0, done.stderr
    return _histories(out)


@pytest.mark.parametrize(
    "fault, failing",
    [
        ("fill@checkpoint:model=gluon,number=2", "checkpoints/gluon/ckpt-000002"),  # half-way through a checkpoint
        ("fill@open:file=reproduce.json,n=2", "reproduce.json"),  # the record after the second model
    ],
)
def test_a_full_disk_stops_in_one_line_keeps_what_was_written_and_resume_continues(
    fault, failing, small_disk, uninterrupted, gluon_bn_cli
):
    out, ballast = small_disk / "out", small_disk / "ballast"
    env = {**os.environ, fault_hook.BALLAST_ENV: str(ballast)}
    full = gluon_bn_cli("reproduce", *SETTINGS, "--out", str(out), fault=fault, env=env)
    assert full.returncode == 1, full.stderr[-3000:]
    assert full.stderr.strip() == (
        f"gluon-bn: error: {out / failing}: no space left on device; free some space "
        "there or choose another --out (reproduce and exercise then continue with --resume)"
    )
    assert ballast.stat().st_size > 3 * 2**20  # the fault filled the disk
    record = json.loads((out / "reproduce.json").read_text())  # the record of the first model, whole
    assert record["complete"] is False and _histories(out) == {"scratch": uninterrupted["scratch"]}
    latest = json.loads((out / "checkpoints" / "gluon" / "latest.json").read_text())
    assert latest["number"] == (1 if "checkpoint" in fault else 2)
    assert sorted(p.name for p in (out / "checkpoints" / "gluon").iterdir()) == sorted(
        ["latest.json", latest["folder"]]
    )
    ballast.unlink()
    resumed = gluon_bn_cli("reproduce", *SETTINGS, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _histories(out) == uninterrupted
