"""FastBatchNorm: the chapter's numbers from one compiled graph, in LeNet, under hybridize()."""
import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from mxnet import autograd, gluon, init, nd

from gluon_bn import BatchNorm, FastBatchNorm, lenet
from gluon_bn.checkpoint import Checkpointer
from gluon_bn.comparison import check_layer
from wrong_layers import wrong_layer

FAST = lambda c, num_dims: FastBatchNorm(c, num_dims)  # noqa: E731


@pytest.mark.parametrize("shape", [(256, 6, 24, 24), (256, 120), (8, 3, 2, 2), (2, 1)])
def test_fast_layer_agrees_with_the_reference(shape):
    checks = check_layer(FAST, shape, "fast", steps=3)
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]


def test_harness_still_tells_a_wrong_layer_apart():
    assert not all(c.passed for c in check_layer(wrong_layer("unbiased"), (8, 3, 2, 2), "wrong"))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 9), c=st.integers(1, 4), hw=st.integers(1, 4), conv=st.booleans(),
       loc=st.floats(-100, 100), scale=st.floats(0.01, 100))
def test_fast_matches_the_chapters_layer_step_by_step(n, c, hw, conv, loc, scale):
    shape = (n, c, hw, hw) if conv else (n, c)
    rng = np.random.default_rng(n * 100 + c * 10 + hw)
    fast, slow = FastBatchNorm(c, len(shape)), BatchNorm(c, len(shape))
    for layer in (fast, slow):
        layer.initialize()
    for _ in range(2):
        x = nd.array(rng.normal(loc, scale, shape))
        dy = nd.array(rng.normal(size=shape))
        grads = []
        for layer in (fast, slow):
            X = x.copy()
            X.attach_grad()
            with autograd.record():
                Y = layer(X)
            Y.backward(dy)
            grads.append((Y.asnumpy(), X.grad.asnumpy(), layer.gamma.grad().asnumpy()))
        for a, b in zip(*grads):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-3 * max(1.0, np.abs(b).max()))
    np.testing.assert_allclose(fast.moving_var.asnumpy(), slow.moving_var.asnumpy(), rtol=1e-4, atol=1e-6 * scale ** 2)
    np.testing.assert_allclose(fast(x).asnumpy(), slow(x).asnumpy(), rtol=1e-3, atol=1e-3)


def test_fast_lenet_trains_hybridized_and_checkpoints(tmp_path):
    mx.random.seed(0)
    net = lenet("fast")
    net.initialize(init=init.Xavier())
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 1.0})
    X, y = nd.random.uniform(shape=(32, 1, 28, 28)), nd.array(np.arange(32) % 10)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    losses = []
    for _ in range(5):
        with autograd.record():
            l = loss(net(X), y).sum()
        l.backward()
        trainer.step(32)
        losses.append(l.asscalar())
    assert losses[-1] < losses[0]
    assert float(net[1].moving_var.abs().sum().asscalar()) > 0
    Checkpointer(tmp_path).save(net, trainer, {})
    other = lenet("fast")
    other.initialize()
    other.hybridize()
    other(X)
    Checkpointer(tmp_path).load(other, gluon.Trainer(other.collect_params(), "sgd", {"learning_rate": 1.0}), mx.cpu())
    np.testing.assert_allclose(other(X).asnumpy(), net(X).asnumpy(), rtol=1e-5, atol=1e-5)


def test_fast_keeps_the_chapters_input_checks():
    layer = FastBatchNorm(3, 2)
    layer.initialize()
    with pytest.raises(ValueError, match="expected 2-D with 3 features"):
        layer(nd.ones((4, 5)))


def test_fast_lenet_trains_step_for_step_like_the_chapters(real_data_dir):
    """Whole-model check: a stale gradient anywhere (e.g. read before it is written) shows here."""
    from gluon_bn import load_data_fashion_mnist
    from gluon_bn.comparison import copy_parameters
    from gluon_bn.runtime import compile_net
    train_iter, _ = load_data_fashion_mnist(256, num_train=256 * 12, seed=0)
    nets = {}
    for norm in ("scratch", "fast"):
        mx.random.seed(0)
        nets[norm] = lenet(norm)
        nets[norm].initialize(init=init.Xavier())
    X0 = next(iter(train_iter))[0]
    for net in nets.values():
        net(X0)
    copy_parameters(nets["scratch"], nets["fast"])
    compile_net(nets["fast"])
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    trainers = {k: gluon.Trainer(n.collect_params(), "sgd", {"learning_rate": 1.0}) for k, n in nets.items()}
    losses = {k: [] for k in nets}
    for X, y in train_iter:
        for name, net in nets.items():
            with autograd.record():
                l = loss(net(X), y).sum()
            l.backward()
            trainers[name].step(256)
            losses[name].append(l.asscalar())
    np.testing.assert_allclose(losses["fast"], losses["scratch"], rtol=2e-3)
    assert losses["fast"][-1] < losses["fast"][0]
