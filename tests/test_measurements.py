"""What the bench measures with: layer timings and their ratios, the d2l pipeline, memory, PyTorch's LeNet."""

import time

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon, init, nd
from mxnet.gluon import nn

from gluon_bn import FastBatchNorm, lenet
from gluon_bn.chapter.data import load_data_fashion_mnist
from gluon_bn.chapter.fashion_mnist import read_fashion_mnist
from gluon_bn.norms import NORMS
from gluon_bn.performance.measurements import Workload, d2l_loaders, time_bn_layers
from gluon_bn.performance.profiles import memory_over_steps


def test_layer_timings_carry_ratios_to_the_baseline_measured_in_the_same_run():
    layers = {"gluon": NORMS["gluon"].layer, "fast": lambda c, d: FastBatchNorm(c, d)}
    rows = time_bn_layers(layers, shapes=((16, 3, 4, 4), (16, 5)), repeats=2, warmup=1)
    assert [(r["layer"], tuple(r["shape"])) for r in rows] == [
        ("gluon", (16, 3, 4, 4)),
        ("fast", (16, 3, 4, 4)),
        ("gluon", (16, 5)),
        ("fast", (16, 5)),
    ]
    for row in rows:
        base = next(r for r in rows if r["layer"] == "gluon" and r["shape"] == row["shape"])
        for key in ("forward", "backward", "forward_backward"):
            assert row[f"{key}_ms"] > 0
            assert row[f"{key}_ratio"] == pytest.approx(row[f"{key}_ms"] / base[f"{key}_ms"])


class Sleepy(nn.BatchNorm):
    """nn.BatchNorm that sleeps 200 ms in every forward: a known cost, far above a busy machine's noise."""

    def forward(self, X):
        time.sleep(0.2)
        return super().forward(X)


def test_layer_ratios_show_a_known_extra_cost_in_forward_only():
    layers = {"gluon": NORMS["gluon"].layer, "sleepy": lambda c, d: Sleepy(in_channels=c)}
    rows = {r["layer"]: r for r in time_bn_layers(layers, shapes=((16, 3, 4, 4),), repeats=3, warmup=1)}
    sleepy, gluon = rows["sleepy"], rows["gluon"]
    assert sleepy["forward_ms"] >= 200 and sleepy["backward_ms"] < sleepy["forward_ms"] / 2  # forward only
    for key in ("forward", "backward", "forward_backward"):  # each ratio is against this run's baseline
        assert sleepy[f"{key}_ratio"] == pytest.approx(sleepy[f"{key}_ms"] / gluon[f"{key}_ms"])
        assert gluon[f"{key}_ratio"] == 1.0


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


@pytest.mark.slow
def test_memory_sampling_sees_a_leak_and_a_flat_run(real_data_dir):
    train_iter, test_iter = load_data_fashion_mnist(128, num_train=512, num_test=128, seed=0)
    growth = {}
    for name, wrap in (("flat", lambda n: n), ("leaky", Leaky)):
        net = lenet("gluon")
        net.initialize(init=init.Xavier())
        samples = memory_over_steps(Workload(wrap(net), train_iter, test_iter, 128, 0.1, mx.cpu()), steps=40, every=10)
        assert [s for s, _ in samples] == [0, 10, 20, 30, 40]
        growth[name] = samples[-1][1] - samples[1][1]
    assert growth["leaky"] > 150  # 30 steps x 8 MB
    assert growth["flat"] < 20


def test_pytorch_lenet_matches_ours_and_trains(real_data_dir):
    pytest.importorskip("torch", reason="PyTorch is optional: the bench leaves its row out without it")
    from gluon_bn.performance import torch_lenet

    ours = lenet("gluon")
    ours.initialize()
    ours(nd.zeros((1, 1, 28, 28)))
    learnable = sum(p.data().size for p in ours.collect_params().values() if p.grad_req != "null")
    assert sum(p.numel() for p in torch_lenet.lenet_bn().parameters()) == learnable
    data = read_fashion_mnist()
    result = torch_lenet.time_torch_epoch(
        data.train_images[:2048],
        data.train_labels[:2048],
        data.test_images[:512],
        data.test_labels[:512],
        batch_size=128,
        lr=1.0,
        threads=1,
    )
    assert result["threads"] == 1 and result["epoch_s"] > 0
    assert result["loss"] < 2.3 and result["train_acc"] > 0.2  # it learns
