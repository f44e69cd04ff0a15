"""Compiled graphs change speed, never results; ``is_compiled`` reads what hybridize set."""

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, init
from mxnet.gluon import nn

from gluon_bn import lenet, load_data_fashion_mnist
from gluon_bn.runtime.compiled import compile_net, is_compiled


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


def test_is_compiled_follows_hybridize():
    """``is_compiled`` reads ``HybridBlock._active`` (Gluon 1.9.1 has no public way to ask): a guard for upgrades."""
    missing = object()
    for block in (nn.Dense(3), nn.HybridSequential()):
        if getattr(block, "_active", missing) is missing:
            pytest.fail(
                f"gluon.HybridBlock instances ({type(block).__name__}) have no _active attribute any "
                "more: an MXNet upgrade renamed the flag hybridize() sets, which "
                "gluon_bn.runtime.compiled.is_compiled reads; make it read the new one"
            )
    net = lenet("gluon")
    assert not is_compiled(net)
    assert compile_net(net) is net and is_compiled(net)
    net.hybridize(active=False)
    assert not is_compiled(net)
    fast = lenet("fast")  # FastBatchNorm's inner training graph is always compiled: that does not count
    inner = []
    fast.apply(lambda block: inner.append(block) if getattr(block, "always_compiled", False) else None)
    assert len(inner) == 4 and all(block._active for block in inner)
    assert not is_compiled(fast)
    assert is_compiled(compile_net(fast))
