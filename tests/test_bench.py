"""``gluon-bn bench`` and what it measures with: layer timings, pipelines, memory, PyTorch, runtime."""
import ctypes
import json
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from gluon_bn import FastBatchNorm, lenet
from gluon_bn.bench import d2l_loaders, memory_over_steps, time_bn_layers
from gluon_bn.comparison import LAYERS
from gluon_bn.data import load_data_fashion_mnist, read_fashion_mnist
from gluon_bn.precise_bn import recompute_bn_stats
from gluon_bn.bnstate import bn_layers, get_stats
from gluon_bn.runtime import compile_net, default_threads, logical_cpus, set_threads


def test_layer_timings_carry_ratios_to_the_baseline_measured_in_the_same_run():
    layers = {"gluon": LAYERS["gluon"], "fast": lambda c, d: FastBatchNorm(c, d)}
    rows = time_bn_layers(layers, shapes=((16, 3, 4, 4), (16, 5)), repeats=2, warmup=1)
    assert [(r["layer"], tuple(r["shape"])) for r in rows] == [
        ("gluon", (16, 3, 4, 4)), ("fast", (16, 3, 4, 4)), ("gluon", (16, 5)), ("fast", (16, 5))]
    for row in rows:
        base = next(r for r in rows if r["layer"] == "gluon" and r["shape"] == row["shape"])
        for key in ("forward", "backward", "forward_backward"):
            assert row[f"{key}_ms"] > 0
            assert row[f"{key}_ratio"] == pytest.approx(row[f"{key}_ms"] / base[f"{key}_ms"])


class Sleepy(nn.BatchNorm):
    """nn.BatchNorm that sleeps 20 ms in every forward: a known cost the ratios must show."""

    def forward(self, X):
        time.sleep(0.02)
        return super().forward(X)


def test_layer_ratios_show_a_known_extra_cost_in_forward_only():
    layers = {"gluon": LAYERS["gluon"], "sleepy": lambda c, d: Sleepy(in_channels=c)}
    rows = {r["layer"]: r for r in time_bn_layers(layers, shapes=((16, 3, 4, 4),), repeats=3, warmup=1)}
    assert rows["sleepy"]["forward_ms"] >= 20 and rows["sleepy"]["forward_ratio"] > 5
    assert rows["sleepy"]["backward_ratio"] < rows["sleepy"]["forward_ratio"] / 5


def test_d2l_pipeline_serves_the_same_examples_as_our_loader(real_data_dir):
    data = read_fashion_mnist()
    arrays = (data.train_images[:300], data.train_labels[:300], data.test_images[:300], data.test_labels[:300])
    train, test = d2l_loaders(*arrays, batch_size=128)
    _, ours = load_data_fashion_mnist(128, num_train=300, num_test=300)
    for (X, y), (X_ours, y_ours) in zip(test, ours):  # unshuffled: batch for batch
        assert X.shape == X_ours.shape and X.dtype == np.float32
        np.testing.assert_array_equal(X.asnumpy(), X_ours.asnumpy())
        np.testing.assert_array_equal(y.asnumpy(), y_ours.asnumpy())
    seen = sorted(float(x.sum()) for X, _ in train for x in X.asnumpy())  # shuffled: the same examples
    assert seen == sorted(float(x.sum()) for x in arrays[0][:, None].astype(np.float32) / 255)


class Leaky(gluon.Block):
    """Wraps a net and keeps 8 MB per forward pass: the leak the memory section must see."""

    def __init__(self, net):
        super().__init__()
        self.net, self.kept = net, []

    def forward(self, X):
        self.kept.append(nd.ones((1 << 21,)))
        return self.net(X)


def test_memory_sampling_sees_a_leak_and_a_flat_run(real_data_dir):
    train_iter, test_iter = load_data_fashion_mnist(128, num_train=512, num_test=128, seed=0)
    growth = {}
    for name, wrap in (("flat", lambda n: n), ("leaky", Leaky)):
        net = lenet("gluon")
        net.initialize(init=init.Xavier())
        samples = memory_over_steps(wrap(net), train_iter, test_iter, 128, 0.1, mx.cpu(), steps=40, every=10)
        assert [s for s, _ in samples] == [0, 10, 20, 30, 40]
        growth[name] = samples[-1][1] - samples[1][1]
    assert growth["leaky"] > 150  # 30 steps x 8 MB
    assert growth["flat"] < 20


def test_pytorch_lenet_matches_ours_and_trains(real_data_dir):
    pytest.importorskip("torch", reason="PyTorch is optional: the bench leaves its row out without it")
    from gluon_bn import torch_lenet
    ours = lenet("gluon")
    ours.initialize()
    ours(nd.zeros((1, 1, 28, 28)))
    learnable = sum(p.data().size for p in ours.collect_params().values() if p.grad_req != "null")
    assert sum(p.numel() for p in torch_lenet.lenet_bn().parameters()) == learnable
    data = read_fashion_mnist()
    result = torch_lenet.time_torch_epoch(data.train_images[:2048], data.train_labels[:2048], data.test_images[:512],
                                          data.test_labels[:512], batch_size=128, lr=1.0, threads=1)
    assert result["threads"] == 1 and result["epoch_s"] > 0
    assert result["loss"] < 2.3 and result["train_acc"] > 0.2  # it learns


def _steps(net, batches, lr=1.0):
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    losses = []
    for X, y in batches:
        with autograd.record():
            l = loss(net(X), y).mean()
        l.backward()
        trainer.step(1)
        losses.append(l.asscalar())
    return losses


@pytest.mark.parametrize("norm", ["gluon", "fast", "scratch"])
def test_compiled_training_gives_the_same_numbers(real_data_dir, norm):
    train_iter, _ = load_data_fashion_mnist(64, num_train=512, seed=0)
    batches = list(train_iter)
    runs = []
    for compiled in (False, True):
        mx.random.seed(0)
        net = lenet(norm)
        net.initialize(init=init.Xavier())
        runs.append(_steps(compile_net(net) if compiled else net, batches, lr=0.3))
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-4)
    assert np.mean(runs[1][-3:]) < np.mean(runs[1][:3])  # it trained


def test_precise_bn_works_on_a_compiled_net_and_leaves_it_compiled(real_data_dir):
    train_iter, _ = load_data_fashion_mnist(128, num_train=512, seed=0)
    stats = []
    for compiled in (False, True):
        mx.random.seed(0)
        net = lenet("gluon")
        net.initialize(init=init.Xavier())
        if compiled:
            compile_net(net)
        recompute_bn_stats(net, train_iter, num_batches=4)
        stats.append([get_stats(layer) for layer in bn_layers(net)])
    # oneDNN may pick other kernels once a net was compiled: float32 rounding, grown through 4 layers
    for (m0, v0), (m1, v1) in zip(*stats):
        np.testing.assert_allclose(m0, m1, rtol=1e-2, atol=1e-3)
        np.testing.assert_allclose(v0, v1, rtol=1e-2, atol=1e-3)
    assert net._active


def test_threads_default_is_mxnets_and_zero_is_refused(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert default_threads() == logical_cpus()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    openmp = ctypes.CDLL("libgomp.so.1")  # the OpenMP runtime MXNet's wheel links, already loaded
    for wanted in (1, 2, 1):
        set_threads(wanted)
        assert openmp.omp_get_max_threads() == wanted  # what OpenMP itself now says for this thread
    set_threads()
    assert openmp.omp_get_max_threads() == 3
    with pytest.raises(ValueError, match="at least 1"):
        set_threads(0)


def gluon_bn(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gluon_bn", *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd)


def test_bench_cli_quick_writes_record_report_and_targets(real_data_dir, tmp_path):
    out = tmp_path / "out"
    result = gluon_bn("bench", "--quick", "--models", "gluon", "fast", "--ctx", "cpu", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "bench.json").read_text())
    assert record["command"] == "bench" and set(record["results"]) == {"layers", "epochs", "memory", "profile"}
    setups = {(r["model"], r["setup"]) for r in record["results"]["epochs"]}
    for model in ("gluon", "fast"):
        assert {(model, "chapter's code, d2l pipeline"), (model, "chapter's code"), (model, "gluon-bn")} <= setups
    epochs = record["results"]["epochs"]
    d2l_s = {r["model"]: r["epoch_s"] for r in epochs if r["setup"] == "chapter's code, d2l pipeline"}
    torch_s = next((r["epoch_s"] for r in epochs if r["model"] == "pytorch"), None)
    for row in epochs:
        assert row["vs_d2l"] == (pytest.approx(row["epoch_s"] / d2l_s[row["model"]]) if row["model"] in d2l_s else None)
        assert row["vs_torch"] == (pytest.approx(row["epoch_s"] / torch_s) if torch_s else None)
    assert {r["layer"] for r in record["results"]["layers"]} == {"scratch", "gluon", "fast"}
    assert len(record["results"]["memory"]) == 2 and set(record["results"]["profile"]) == {"gluon", "fast"}
    text = (out / "bench.md").read_text()
    fast = [r for r in record["results"]["layers"] if r["layer"] == "fast"]
    worst = max(fast, key=lambda r: r["forward_backward_ratio"])
    met = sum(r["forward_backward_ratio"] <= 1.2 for r in fast)
    assert (f"- FastBatchNorm forward+backward at most 1.2x nn.BatchNorm: met at {met} of 4 shapes (worst "
            f"{worst['forward_backward_ratio']:.2f}x at {tuple(worst['shape'])})") in text.split("## Targets")[1]
    for row in record["results"]["memory"]:
        assert f"memory flat over 20 steps: {row['growth_mb']:+.1f} MB, {'met' if row['flat'] else 'NOT met'}" in text
    assert (out / "profile-gluon.json").exists() and (out / "profile-fast.json").exists()
    assert not (out.parent / "profile.json").exists()  # MXNet's default trace file, in the working folder


@pytest.mark.parametrize("args, message", [
    (["bench", "--sections", "speed"], "invalid choice: 'speed'"),
    (["bench", "--repeats", "0"], "must be positive"),
    (["reproduce", "--threads", "0"], "must be positive"),
])
def test_bench_and_threads_refuse_bad_settings(args, message):
    result = gluon_bn(*args)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr
