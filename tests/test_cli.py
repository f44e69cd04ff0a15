"""The ``gluon-bn`` command line: bad arguments, a GPU that is not there, an unwritable --out, missing or
damaged data: each one clear line and a non-zero exit, before any training."""

import os

import pytest

from gluon_bn.experiments.catalogue import EXERCISES


@pytest.mark.parametrize(
    "args,message",
    [
        (["--epochs", "0"], "argument --epochs: must be a positive integer, at most 2147483647, got 0"),
        (["--lr", "inf"], "argument --lr: must be positive and finite, got inf"),
        (["--lr", "1e39"], "lr must be positive and at most 3.4e+38"),
        (["--batch-size", "-3"], "argument --batch-size: must be a positive integer"),
        (["--lr", "abc"], "argument --lr: 'abc' is not a float"),
        (["--model", "resnet"], "argument --model: invalid choice: 'resnet'"),
        (["--ctx", "tpu"], "unknown context 'tpu': choose from cpu, gpu, auto, or list devices as kind:index"),
        (["--ctx", "cpu:0,cpu:0"], "--ctx cpu:0,cpu:0: a device is listed twice"),
        (["--ctx", "cpu:0,cpu1"], "--ctx cpu:0,cpu1: 'cpu1' is not a device; write kind:index"),
        (["--ctx", "cpu:0,gpu:0"], "--ctx cpu:0,gpu:0: CPUs and GPUs mixed; list devices of one kind"),
        (["--ctx", "gpu:0,gpu:99"], "gpu(99) does not exist"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, message, tmp_path, gluon_bn_cli):
    result = gluon_bn_cli("reproduce", *args, "--out", str(tmp_path))
    assert result.returncode == 2
    assert message in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "args, message",
    [
        (["bench", "--sections", "speed"], "invalid choice: 'speed'"),
        (["bench", "--repeats", "0"], "must be a positive integer"),
        (["reproduce", "--threads", "0"], "must be a positive integer"),
        (["bench", "--rounds", "2"], "rounds and repeats must be at least 3 (got 2 and 30)"),
    ],
)
def test_bench_and_threads_refuse_bad_settings(args, message, gluon_bn_cli):
    result = gluon_bn_cli(*args)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_exercise_list_and_unknown_name(gluon_bn_cli):
    listing = gluon_bn_cli("exercise", "--list")
    assert listing.returncode == 0 and all(name in listing.stdout for name in EXERCISES)
    bad = gluon_bn_cli("exercise", "bogus")
    assert bad.returncode == 2 and "invalid choice: 'bogus'" in bad.stderr


def test_gpu_that_is_not_there_is_refused_before_training(tmp_path, monkeypatch, capsys):
    """Holds on a machine with a GPU too: MXNet is made to see none."""
    import mxnet as mx

    from gluon_bn import cli

    monkeypatch.setattr(mx.context, "num_gpus", lambda: 0)
    assert cli.main(["reproduce", "--ctx", "gpu", "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().startswith("gluon-bn: error: --ctx gpu: MXNet sees no GPU")
    assert len(captured.err.strip().splitlines()) == 1 and "training on" not in captured.out


def test_damaged_data_is_one_line_naming_the_file_and_exit_1(data_copy, tmp_path, gluon_bn_cli):
    damaged = data_copy / "train-labels-idx1-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:-100])  # truncated
    result = gluon_bn_cli("reproduce", "--ctx", "cpu", "--data-dir", str(data_copy), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gluon-bn: error: {damaged} is truncated or not a gzip file")
    assert "training on" not in result.stdout


def test_unwritable_out_is_refused_before_training(tmp_path, gluon_bn_cli):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = gluon_bn_cli("reproduce", "--ctx", "cpu", "--out", str(blocker / "out"))
    assert result.returncode == 2 and "--out" in result.stderr and "cannot write there" in result.stderr
    assert "Traceback" not in result.stderr and "training on" not in result.stdout


def test_missing_data_is_one_clear_line(tmp_path, gluon_bn_cli):
    env = {**os.environ, "GLUON_BN_DATA_URL": "http://127.0.0.1:9/"}
    result = gluon_bn_cli(
        "reproduce", "--ctx", "cpu", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "out"), env=env
    )
    assert result.returncode == 1
    err = result.stderr.strip()
    assert err.startswith("gluon-bn: error: Fashion-MNIST not found. Searched: " + str(tmp_path / "none"))
    assert "apt-get install dataset-fashion-mnist" in err and "Traceback" not in err
