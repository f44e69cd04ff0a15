"""Interruptions, kills, divergence and bad layer input end with a clear message and nothing lost."""
import json
import random
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from gluon_bn import BatchNorm, experiments, lenet
from gluon_bn.checkpoint import Checkpointer
from gluon_bn.errors import Diverged, UsageError
from gluon_bn.experiments import ReproduceConfig, train_model
from gluon_bn.reference import bn_forward

QUICK = ["--epochs", "3", "--num-train", "1536", "--num-test", "256", "--ctx", "cpu", "--seed", "11"]


def _run(*args, wait=True):
    cmd = [sys.executable, "-m", "gluon_bn", "reproduce", *QUICK, *args]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _histories(out):
    results = json.loads((out / "reproduce.json").read_text())["results"]
    return {name: ([{k: v for k, v in e.items() if k != "time"} for e in r["history"]], r["first_bn"])
            for name, r in results.items()}


def _wait_for_checkpoint(out, proc, timeout=300):
    latest = out / "checkpoints" / "scratch" / "latest.json"
    deadline = time.time() + timeout
    while not latest.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.05)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, real_data_dir):
    out = tmp_path_factory.mktemp("uninterrupted")
    result = _run("--out", str(out))
    assert result.returncode == 0, result.stderr
    return _histories(out)


def test_sigkill_at_a_random_moment_then_resume_gives_the_same_numbers(uninterrupted, tmp_path):
    proc = _run("--out", str(tmp_path), wait=False)
    _wait_for_checkpoint(tmp_path, proc)
    time.sleep(random.uniform(0.0, 2.0))
    proc.kill()
    proc.wait()
    for latest in (tmp_path / "checkpoints").glob("*/latest.json"):  # what is on disk is readable
        meta = json.loads(latest.read_text())
        assert (latest.parent / meta["folder"] / "params").is_file()
    resumed = _run("--out", str(tmp_path), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout or proc.returncode == 0
    assert _histories(tmp_path) == uninterrupted


def test_ctrl_c_saves_mid_epoch_and_resume_gives_the_same_numbers(uninterrupted, tmp_path):
    proc = _run("--out", str(tmp_path), wait=False)
    _wait_for_checkpoint(tmp_path, proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted during epoch" in err and "--resume" in err and "Traceback" not in err
    meta = json.loads((tmp_path / "checkpoints" / "scratch" / "latest.json").read_text())
    assert meta["epochs_done"] >= 1
    resumed = _run("--out", str(tmp_path), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert _histories(tmp_path) == uninterrupted


def test_resume_refuses_other_settings(tmp_path, real_data_dir):
    config = ReproduceConfig(epochs=1, num_train=512, num_test=256, ctx="cpu", out=str(tmp_path))
    train_model("gluon", config, mx.cpu(), log=lambda s: None, checkpoints=tmp_path / "ck")
    config.lr = 0.5
    with pytest.raises(UsageError, match=r"made with lr 1.0 \(now 0.5\)"):
        train_model("gluon", config, mx.cpu(), log=lambda s: None, checkpoints=tmp_path / "ck", resume=True)


def _momentum_setup(ctx):
    mx.random.seed(0)
    net = lenet("scratch")
    net.initialize(ctx=ctx, init=init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    return net, trainer


def _steps(net, trainer, batches):
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    for X, y in batches:
        with autograd.record():
            l = loss(net(X), y).sum()
        l.backward()
        trainer.step(X.shape[0])


def test_checkpoint_round_trip_restores_weights_stats_and_momentum(tmp_path):
    rng = np.random.default_rng(0)
    batches = [(nd.array(rng.random((8, 1, 28, 28))), nd.array(rng.integers(0, 10, 8))) for _ in range(6)]
    net, trainer = _momentum_setup(mx.cpu())
    _steps(net, trainer, batches[:3])
    Checkpointer(tmp_path).save(net, trainer, {"note": "after 3"})
    _steps(net, trainer, batches[3:])
    other, other_trainer = _momentum_setup(mx.cpu())
    other(batches[0][0])
    assert Checkpointer(tmp_path).load(other, other_trainer, mx.cpu())["note"] == "after 3"
    _steps(other, other_trainer, batches[3:])
    for p, q in zip(net.collect_params().values(), other.collect_params().values()):
        np.testing.assert_array_equal(p.data().asnumpy(), q.data().asnumpy())
    np.testing.assert_array_equal(net[1].moving_var.asnumpy(), other[1].moving_var.asnumpy())


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    net, trainer = _momentum_setup(mx.cpu())
    net(nd.zeros((2, 1, 28, 28)))
    ckpt = Checkpointer(tmp_path)
    ckpt.save(net, trainer, {"epochs_done": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(nd, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save(net, trainer, {"epochs_done": 2})
    monkeypatch.undo()
    assert ckpt.meta()["epochs_done"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000001", "latest.json"]
    ckpt.load(*_momentum_setup(mx.cpu()), mx.cpu())


def test_divergence_names_epoch_and_batch_and_keeps_the_last_good_state(tmp_path, real_data_dir, monkeypatch):
    """A NaN in epoch 2 stops the run before the bad update; epoch 1's checkpoint and record stay."""
    real_loader = experiments.load_data_fashion_mnist

    def poisoned(*args, **kwargs):
        train, test = real_loader(*args, **kwargs)

        class Poisoned:
            state, restore = train.state, train.restore

            def __len__(self):
                return len(train)

            def __iter__(self):
                for i, (X, y) in enumerate(iter(train)):
                    if Poisoned.passes == 1 and i == 2:
                        X = X * np.nan
                    yield X, y
                Poisoned.passes += 1
        Poisoned.passes = 0
        return Poisoned(), test

    monkeypatch.setattr(experiments, "load_data_fashion_mnist", poisoned)
    config = ReproduceConfig(models=("scratch",), epochs=3, num_train=1024, num_test=256, ctx="cpu",
                             out=str(tmp_path))
    with pytest.raises(Diverged) as err:
        experiments.reproduce(config, log=lambda s: None)
    assert (err.value.epoch, err.value.batch) == (2, 3)
    assert "epoch 2, batch 3" in str(err.value) and "--lr 0.5" in str(err.value)
    meta = json.loads((tmp_path / "checkpoints" / "scratch" / "latest.json").read_text())
    assert meta["epochs_done"] == 1 and len(meta["history"]) == 1
    record = json.loads((tmp_path / "reproduce.json").read_text())
    assert record["diverged"] == {"model": "scratch", "epoch": 2, "batch": 3, "loss": "nan"}


def test_real_divergence_on_the_cli_is_one_line_and_exit_1(tmp_path, real_data_dir):
    result = subprocess.run([sys.executable, "-m", "gluon_bn", "reproduce", "--model", "none", "--epochs", "1",
                             "--num-train", "1024", "--num-test", "256", "--lr", "1e38", "--ctx", "cpu",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.startswith("gluon-bn: error: training diverged: loss")
    assert "at epoch 1, batch" in result.stderr and "try a lower learning rate" in result.stderr
    assert "Traceback" not in result.stderr


# -- bad input to the layers -------------------------------------------------------------------

def _layers(c, num_dims, ctx=None):
    scratch, gl = BatchNorm(c, num_dims), nn.BatchNorm(in_channels=c)
    for layer in (scratch, gl):
        layer.initialize(ctx=ctx)
    return scratch, gl


@pytest.mark.parametrize("shape,match", [((4, 5), r"got input of shape \(4, 5\): expected 2-D with 3"),
                                         ((4, 3, 2, 2), r"expected 2-D with 3 features"),
                                         ((4, 3, 2), r"shape \(4, 3, 2\): expected 2-D")])
def test_block_names_a_shape_that_does_not_fit(shape, match):
    scratch, _ = _layers(3, 2)
    with pytest.raises(ValueError, match=match):
        scratch(nd.ones(shape))


@pytest.mark.parametrize("args", [(6, 3), (0, 2)])
def test_block_refuses_impossible_construction(args):
    with pytest.raises(ValueError, match="num_dims is 2 after a Dense layer"):
        BatchNorm(*args)


def test_empty_training_batch_is_refused_clearly():
    scratch, _ = _layers(3, 2)
    empty = nd.array(np.zeros((0, 3), np.float32))  # nd.zeros((0, 3)) reads 0 as "unknown"
    with autograd.record(), pytest.raises(ValueError, match=r"empty batch \(shape \(0, 3\)\)"):
        scratch(empty)
    with pytest.raises(ValueError, match="empty batch"):  # prediction too: MXNet cannot compute on it
        scratch(empty)


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1, 1)])
def test_batch_of_one_gives_beta_like_gluon(shape):
    scratch, gl = _layers(3, len(shape))
    x = nd.random.normal(shape=shape)
    with autograd.record():
        ys, yg = scratch(x), gl(x)
    np.testing.assert_allclose(ys.asnumpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(ys.asnumpy(), yg.asnumpy(), atol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_propagate_like_gluon(bad):
    scratch, gl = _layers(3, 2)
    x = nd.array([[bad, 1.0, 2.0], [1.0, 2.0, 3.0]])
    with autograd.record():
        ys, yg = scratch(x), gl(x)
    np.testing.assert_array_equal(np.isnan(ys.asnumpy()), np.isnan(yg.asnumpy()))
    assert np.isnan(ys.asnumpy()[:, 0]).all() and np.isfinite(ys.asnumpy()[:, 1:]).all()


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_other_dtypes_need_a_cast_and_then_work(dtype):
    scratch, _ = _layers(3, 2)
    x = np.random.default_rng(0).normal(2, 3, (16, 3))
    with pytest.raises(TypeError, match=f"input is {dtype} but gamma is float32: cast the layer"):
        scratch(nd.array(x, dtype=dtype))
    scratch.cast(dtype)
    with autograd.record():
        y = scratch(nd.array(x, dtype=dtype))
    assert y.dtype == np.dtype(dtype) and scratch.moving_var.dtype == np.dtype(dtype)
    ref = bn_forward(x, np.ones(3), np.zeros(3), np.zeros(3), np.zeros(3))[0]
    np.testing.assert_allclose(y.asnumpy(), ref, atol=1e-12 if dtype == "float64" else 1e-2)


def test_input_on_another_context_is_named():
    scratch, _ = _layers(3, 2, ctx=mx.cpu(0))
    with pytest.raises(ValueError, match=r"input is on cpu\(1\) but this BatchNorm's parameters are on"):
        scratch(nd.ones((4, 3), ctx=mx.cpu(1)))


def test_net_on_two_contexts_uses_the_inputs_copy():
    scratch = BatchNorm(3, 2)
    scratch.initialize(ctx=[mx.cpu(0), mx.cpu(1)])
    with autograd.record():
        y = scratch(nd.random.normal(shape=(4, 3), ctx=mx.cpu(1)))
    assert y.context == mx.cpu(1)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 8), c=st.integers(1, 5), hw=st.integers(1, 3), conv=st.booleans(),
       loc=st.floats(-50, 50), scale=st.floats(0.01, 50), steps=st.integers(1, 3))
def test_block_and_gluon_follow_the_reference_over_steps(n, c, hw, conv, loc, scale, steps):
    shape = (n, c, hw, hw) if conv else (n, c)
    rng = np.random.default_rng(n * 1000 + c * 100 + hw)
    scratch, gl = _layers(c, len(shape))
    mm_s, mv_s, mm_g, mv_g = np.zeros(c), np.zeros(c), np.zeros(c), np.ones(c)
    for _ in range(steps):
        x = rng.normal(loc, scale, shape).astype(np.float32)
        with autograd.record():
            ys, yg = scratch(nd.array(x)), gl(nd.array(x))
        yg.backward()
        ref_s, mm_s, mv_s = bn_forward(x, np.ones(c), np.zeros(c), mm_s, mv_s)
        ref_g, mm_g, mv_g = bn_forward(x, np.ones(c), np.zeros(c), mm_g, mv_g)
        np.testing.assert_allclose(ys.asnumpy(), ref_s, rtol=1e-3, atol=2e-3)
        np.testing.assert_allclose(yg.asnumpy(), ref_g, rtol=1e-3, atol=2e-3)
    np.testing.assert_allclose(scratch.moving_var.asnumpy().ravel(), mv_s, rtol=1e-3, atol=1e-4 * scale ** 2)
    np.testing.assert_allclose(gl.running_var.data().asnumpy(), mv_g, rtol=1e-3, atol=1e-4 * scale ** 2)
