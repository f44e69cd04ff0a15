"""Interruptions, kills, divergence and bad layer input end with a clear message and nothing lost."""
import json
import os
import re
import signal
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from gluon_bn import BatchNorm, experiments, faults, lenet, load_data_fashion_mnist, train_ch5
from gluon_bn.bnstate import bn_layers, get_stats
from gluon_bn.checkpoint import Checkpointer
from gluon_bn.errors import Diverged, UsageError
from gluon_bn.experiments import ReproduceConfig, train_model
from gluon_bn.reference import bn_forward
from gluon_bn.runtime import compile_net

SETTINGS = {"--epochs": "2", "--num-train": "1024", "--num-test": "256", "--batch-size": "256", "--lr": "1.0",
            "--seed": "11"}


def _run(out, *args, fault=None, **changed):
    """``gluon-bn reproduce`` (both models) on a real subset; ``fault`` goes to $GLUON_BN_FAULT."""
    values = {**SETTINGS, **{f"--{k.replace('_', '-')}": v for k, v in changed.items()}}
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    if fault:
        env[faults.ENV] = fault
    cmd = [sys.executable, "-m", "gluon_bn", "reproduce", "--ctx", "cpu", "--out", str(out),
           *[part for item in values.items() for part in item], *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def _histories(out):
    results = json.loads((out / "reproduce.json").read_text())["results"]
    return {name: ([{k: v for k, v in e.items() if k != "time"} for e in r["history"]], r["first_bn"])
            for name, r in results.items()}


def _leftovers(out):
    """Temporary files and folders of an interrupted write that nothing cleaned up."""
    return [str(p.relative_to(out)) for p in out.rglob(".*")]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, real_data_dir):
    out = tmp_path_factory.mktemp("uninterrupted")
    result = _run(out)
    assert result.returncode == 0, result.stderr
    return _histories(out)


#: Where a kill -9 lands, and what the resumed run must say about each model's checkpoint.
KILLS = {
    "before the first checkpoint": ("kill@batch:model=scratch,epoch=1,batch=2", []),
    "mid-epoch in the second model": ("kill@batch:model=gluon,epoch=2,batch=3",
                                      ["scratch after epoch 2\n", "gluon after epoch 1\n"]),
    "while a checkpoint folder is written": ("kill@checkpoint:model=scratch,number=2", ["scratch after epoch 1\n"]),
    "while the record is written": ("kill@write:file=reproduce.json", ["scratch after epoch 2\n"]),
}


@pytest.mark.parametrize("fault, resumed_from", KILLS.values(), ids=KILLS.keys())
def test_sigkill_at_a_named_point_then_resume_gives_the_uninterrupted_numbers(fault, resumed_from, uninterrupted,
                                                                             tmp_path):
    killed = _run(tmp_path, fault=fault)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    for latest in (tmp_path / "checkpoints").glob("*/latest.json"):  # what is on disk is readable
        meta = json.loads(latest.read_text())
        assert (latest.parent / meta["folder"] / "params").is_file()
    resumed = _run(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    said = re.findall(r"resuming from \S+/checkpoints/(\w+ after epoch \d+.*\n)", resumed.stdout)
    assert said == resumed_from
    assert _histories(tmp_path) == uninterrupted
    assert _leftovers(tmp_path) == []


def test_ctrl_c_mid_epoch_saves_the_partial_sums_and_resume_gives_the_same_numbers(uninterrupted, tmp_path):
    stopped = _run(tmp_path, fault="interrupt@batch:model=scratch,epoch=2,batch=3")
    assert stopped.returncode == 130
    assert stopped.stderr.strip().splitlines() == [
        f"gluon-bn: error: interrupted during epoch 2 of from scratch; its state is saved in "
        f"{tmp_path / 'checkpoints' / 'scratch'}: run the same command with --resume to continue"]
    meta = json.loads((tmp_path / "checkpoints" / "scratch" / "latest.json").read_text())
    loss_sum, correct, examples = meta["partial"]
    assert meta["epochs_done"] == 1 and examples == 3 * 256
    assert 0 < loss_sum < 3 * 256 * 2.31 and 0 < correct <= examples and correct == int(correct)
    resumed = _run(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "scratch after epoch 1 and 768 examples of epoch 2\n" in resumed.stdout
    assert _histories(tmp_path) == uninterrupted  # epoch 2's numbers add the saved sums to the rest


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory, real_data_dir):
    """A finished one-epoch run of the Gluon LeNet, to resume with other settings."""
    out = tmp_path_factory.mktemp("checkpointed")
    result = _run(out, "--model", "gluon", epochs="1", num_train="512")
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("flag, value, named", [
    ("lr", "0.5", "--lr 1 (now 0.5)"),
    ("batch_size", "128", "--batch-size 256 (now 128)"),
    ("seed", "12", "--seed 11 (now 12)"),
    ("num_train", "256", "--num-train 512 (now 256)"),
    ("num_test", "128", "--num-test 256 (now 128)"),
])
def test_resume_with_another_setting_is_one_line_naming_it_and_exit_2(checkpointed, flag, value, named):
    latest = checkpointed / "checkpoints" / "gluon" / "latest.json"
    before = latest.read_text()
    result = _run(checkpointed, "--model", "gluon", "--resume", **{"epochs": "1", "num_train": "512", flag: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gluon-bn: error: --resume: the checkpoint in ")
    assert f"was made with {named}; rerun with those settings" in lines[0]
    assert latest.read_text() == before and "epoch 1, loss" not in result.stdout


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


class Poisoned:
    """Real batches with batch ``batch`` of epoch ``epoch`` (1-based) turned to NaN; ``before()`` runs just before it."""

    def __init__(self, loader, epoch=2, batch=3, before=lambda: None):
        self.loader, self.epoch, self.batch, self.before, self.passes = loader, epoch, batch, before, 0
        self.state, self.restore = loader.state, loader.restore

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.passes += 1
        for i, (X, y) in enumerate(self.loader, 1):
            if (self.passes, i) == (self.epoch, self.batch):
                self.before()
                X = X * np.nan
            yield X, y


def _whole_state(net, trainer, folder):
    """Every parameter (Gluon's running statistics too), every BN layer's moving statistics, the
    optimizer's state arrays (as ``Trainer.save_states`` writes them) and its update count."""
    nd.waitall()
    trainer.save_states(str(folder / "optimizer.states"))
    return {"params": {name: [d.asnumpy() for d in p.list_data()] for name, p in net.collect_params().items()},
            "stats": [get_stats(layer) for layer in bn_layers(net)],
            "optimizer": ((folder / "optimizer.states").read_bytes(), trainer.optimizer.num_update)}


def _assert_same_state(got, want):
    assert got["params"].keys() == want["params"].keys()
    for name in want["params"]:
        for a, b in zip(got["params"][name], want["params"][name]):
            np.testing.assert_array_equal(a, b, err_msg=name)
    for (mean_a, var_a), (mean_b, var_b) in zip(got["stats"], want["stats"]):
        np.testing.assert_array_equal(mean_a, mean_b)
        np.testing.assert_array_equal(var_a, var_b)
    assert got["optimizer"] == want["optimizer"]


@pytest.mark.parametrize("norm", ["scratch", "fast", "gluon"])
def test_divergence_leaves_no_trace_in_the_model(norm, tmp_path, real_data_dir):
    """Weights, moving statistics and optimizer state after ``Diverged`` are those before the bad batch."""
    mx.random.seed(0)
    net = compile_net(lenet(norm))
    net.initialize(init=init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5, "momentum": 0.9})
    train_iter, test_iter = load_data_fashion_mnist(256, num_train=1024, num_test=256, seed=0)
    before = {}
    poisoned = Poisoned(train_iter, before=lambda: before.update(_whole_state(net, trainer, tmp_path)))
    with pytest.raises(Diverged) as err:
        train_ch5(net, poisoned, test_iter, 256, trainer, mx.cpu(), 3, log=lambda s: None)
    assert (err.value.epoch, err.value.batch) == (2, 3)
    _assert_same_state(_whole_state(net, trainer, tmp_path), before)
    assert all(np.isfinite(s).all() for pair in before["stats"] for s in pair)


@pytest.mark.parametrize("norm", ["scratch", "gluon"])
def test_divergence_names_epoch_and_batch_and_keeps_the_last_good_checkpoint_and_record(norm, tmp_path, real_data_dir,
                                                                                      monkeypatch):
    """A NaN in epoch 2 stops the run; epoch 1's checkpoint and record stay as they were, finite."""
    real_loader = experiments.load_data_fashion_mnist
    monkeypatch.setattr(experiments, "load_data_fashion_mnist",
                        lambda *args, **kwargs: (lambda train, test: (Poisoned(train), test))(*real_loader(*args, **kwargs)))
    config = ReproduceConfig(models=(norm,), epochs=3, num_train=1024, num_test=256, ctx="cpu", out=str(tmp_path))
    checkpoints = tmp_path / "checkpoints" / norm
    saved = {}
    real_save = Checkpointer.save

    def save(self, net, trainer, state):  # what epoch 1's checkpoint held when it was written
        folder = real_save(self, net, trainer, state)
        saved.update({p.name: p.read_bytes() for p in folder.iterdir()}, latest=(checkpoints / "latest.json").read_text())
        return folder
    monkeypatch.setattr(Checkpointer, "save", save)
    with pytest.raises(Diverged) as err:
        experiments.reproduce(config, log=lambda s: None)
    assert (err.value.epoch, err.value.batch) == (2, 3)
    assert "epoch 2, batch 3" in str(err.value) and "--lr 0.5" in str(err.value)
    meta = json.loads((checkpoints / "latest.json").read_text())
    assert meta["epochs_done"] == 1 and len(meta["history"]) == 1
    assert {p.name: p.read_bytes() for p in (checkpoints / meta["folder"]).iterdir()} | {
        "latest": (checkpoints / "latest.json").read_text()} == saved
    net = lenet(norm)
    net.initialize()
    net(nd.zeros((2, 1, 28, 28)))
    Checkpointer(checkpoints).load(net, gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 1.0}), mx.cpu())
    assert all(np.isfinite(p.data().asnumpy()).all() for p in net.collect_params().values())
    assert all(np.isfinite(s).all() for layer in bn_layers(net) for s in get_stats(layer))
    text = (tmp_path / "reproduce.json").read_text()
    record = json.loads(text)
    assert record["diverged"] == {"model": norm, "epoch": 2, "batch": 3, "loss": "nan"}
    assert record["complete"] is False and "NaN" not in text and "Infinity" not in text


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
