"""LayerNorm and GroupNorm (``gluon_bn.norms.per_example``): the float64 reference in training and prediction,
compiled or not; a wrong group count caught; the group rule; the LeNets; ``reproduce`` with each."""

import re

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, init, nd
from mxnet.gluon import nn

from gluon_bn import cli, lenet
from gluon_bn.comparison.checks import check_per_example
from gluon_bn.comparison.reference import group_norm_backward, group_norm_forward
from gluon_bn.models import seeded_lenet
from gluon_bn.norms import NORMS
from gluon_bn.norms.bnstate import bn_layers, norm_layers
from gluon_bn.norms.per_example import GroupNorm, group_count
from gluon_bn.reliability.record import load_record
from gluon_bn.runtime.compiled import compile_net, is_compiled
from gluon_bn.runtime.devices import forward_shards

#: LeNet's four normalized layers (6 and 16 channels, 120 and 84 units) at batch 8.
SHAPES = [(8, 6, 24, 24), (8, 16, 8, 8), (8, 120), (8, 84)]
QUANTITIES = ["train output", "dX", "dgamma", "dbeta", "predict output", "predict dX"]


def _groups(norm: str, channels: int) -> int:
    return 1 if norm == "layer" else group_count(channels)


@pytest.mark.parametrize("compiled", [False, True], ids=["imperative", "compiled"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("norm", ["layer", "group"])
def test_each_norm_agrees_with_the_reference_in_training_and_prediction(norm, shape, compiled):
    def factory(c, num_dims):
        layer = NORMS[norm].layer(c, num_dims)
        return compile_net(layer) if compiled else layer

    checks = check_per_example(factory, shape, _groups(norm, shape[1]), norm)
    assert [c.quantity for c in checks] == QUANTITIES
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]


def test_a_group_norm_with_the_wrong_group_count_fails_its_check():
    checks = check_per_example(lambda c, num_dims: GroupNorm(c, 2), (8, 16, 8, 8), 4, "2 groups for 4")
    # dbeta is the sum of dy over batch and space, whatever the groups: the rest must fail.
    assert {c.quantity for c in checks if not c.passed} == {
        "train output",
        "dX",
        "dgamma",
        "predict output",
        "predict dX",
    }


def test_mxnets_layer_norm_over_a_conv_layers_channels_alone_is_not_layer_normalization():
    """``nn.LayerNorm(axis=1)`` on (N, C, H, W) normalizes each pixel over C, not each example over (C, H, W)."""
    checks = check_per_example(lambda c, num_dims: nn.LayerNorm(axis=1, in_channels=c), (8, 6, 24, 24), 1, "axis 1")
    assert not next(c for c in checks if c.quantity == "train output").passed


def test_group_count_is_the_largest_divisor_at_most_the_square_root():
    assert [group_count(c) for c in (6, 16, 120, 84)] == [2, 4, 10, 7]  # LeNet's
    assert [group_count(c) for c in (1, 7, 9, 32)] == [1, 1, 3, 4]


def test_a_group_count_that_does_not_divide_the_channels_is_refused():
    with pytest.raises(ValueError, match="6 channels cannot be split into 4 equal groups"):
        GroupNorm(6, 4)
    with pytest.raises(ValueError, match="cannot be split"):
        group_norm_forward(np.zeros((2, 6)), np.ones(6), np.zeros(6), 4)


@pytest.mark.parametrize("shape, groups", [((3, 4, 2, 3), 2), ((3, 6), 3), ((2, 3, 2, 2), 1)], ids=str)
def test_the_references_gradients_are_its_forwards_finite_differences(shape, groups):
    rng = np.random.default_rng(1)
    x, dy = rng.normal(1.0, 2.0, shape), rng.normal(0.0, 1.0, shape)
    gamma, beta = rng.uniform(0.5, 1.5, shape[1]), rng.normal(0.0, 0.5, shape[1])

    def loss(x=x, gamma=gamma, beta=beta):
        return float((dy * group_norm_forward(x, gamma, beta, groups)).sum())

    def numeric(a, **wrt):
        grad, h = np.zeros_like(a), 1e-6
        for i in np.ndindex(a.shape):
            up, down = a.copy(), a.copy()
            up[i] += h
            down[i] -= h
            grad[i] = (loss(**{wrt["name"]: up}) - loss(**{wrt["name"]: down})) / (2 * h)
        return grad

    dx, dgamma, dbeta = group_norm_backward(x, gamma, dy, groups)
    np.testing.assert_allclose(dx, numeric(x, name="x"), atol=1e-6)
    np.testing.assert_allclose(dgamma, numeric(gamma, name="gamma"), atol=1e-6)
    np.testing.assert_allclose(dbeta, numeric(beta, name="beta"), atol=1e-6)


@pytest.mark.parametrize(
    "norm, kinds, groups",
    [("layer", [GroupNorm, GroupNorm, nn.LayerNorm, nn.LayerNorm], [1, 1]), ("group", [GroupNorm] * 4, [2, 4, 10, 7])],
)
def test_the_lenet_puts_the_norm_where_the_chapter_puts_bn_compiled_or_not(norm, kinds, groups):
    net = lenet(norm)
    layers = norm_layers(net)
    assert isinstance(net, nn.HybridSequential) and layers[0] is net[1]
    assert [type(layer) for layer in layers] == kinds
    assert [layer.num_groups for layer in layers if isinstance(layer, GroupNorm)] == groups
    assert not bn_layers(net)  # no moving statistics
    net.initialize(init=init.Xavier())
    X = nd.random.normal(shape=(3, 1, 28, 28))
    imperative = net(X)
    assert imperative.shape == (3, 10) and not is_compiled(net)
    compile_net(net)
    assert is_compiled(net)
    np.testing.assert_allclose(net(X).asnumpy(), imperative.asnumpy(), atol=1e-5)
    assert [layer.gamma.shape for layer in layers] == [(6,), (16,), (120,), (84,)]  # one gamma per channel


@pytest.mark.parametrize("norm", ["layer", "group"])
def test_frozen_gamma_and_beta_stay_as_they_are_through_a_training_step(norm):
    net = seeded_lenet(norm, mx.cpu(), seed=0, learn_affine=False)
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 1.0})
    net(nd.zeros((1, 1, 28, 28)))  # shapes
    frozen = {p.name: p.data().asnumpy() for layer in norm_layers(net) for p in layer.collect_params().values()}
    conv = net[0].weight.data().asnumpy()
    with autograd.record():
        loss = net(nd.random.normal(shape=(4, 1, 28, 28))).sum()
    loss.backward()
    trainer.step(4)
    assert not np.array_equal(net[0].weight.data().asnumpy(), conv)  # the step was taken
    params = {p.name: p for p in net.collect_params().values()}
    assert all(np.array_equal(params[name].data().asnumpy(), value) for name, value in frozen.items())


@pytest.mark.parametrize("norm, same", [("layer", True), ("group", True), ("gluon", False)])
def test_per_example_statistics_make_two_devices_train_as_one(norm, same):
    """Each example's statistics are its own, so a batch split over devices is normalized as a whole; BN's
    (the control) are its shard's."""
    two = [mx.cpu(0), mx.cpu(1)]
    net = seeded_lenet(norm, two, seed=0)
    X = nd.random.normal(2.0, 3.0, shape=(8, 1, 28, 28))
    with autograd.record():
        whole = net(X).asnumpy()
        shards = forward_shards(net, [X[:4].as_in_context(two[0]), X[4:].as_in_context(two[1])])
    split = np.concatenate([y.asnumpy() for y in shards])
    assert np.allclose(split, whole, atol=1e-5) == same


@pytest.mark.parametrize("norm, label", [("layer", "LayerNorm"), ("group", "GroupNorm")])
def test_reproduce_trains_each_norms_lenet(norm, label, tmp_path, real_data_dir, capsys):
    quick = ["--quick", "--num-train", "512", "--num-test", "256", "--ctx", "cpu"]
    status = cli.main(["reproduce", *quick, "--model", norm, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert f"== {label} LeNet ==" in out
    assert re.search(rf"first {label} layer \(net\[1\]\) gamma: \[", out)
    assert re.search(rf"first {label} layer \(net\[1\]\) beta: +\[", out)
    model = load_record(tmp_path / "reproduce.json")["results"][norm]
    assert len(model["history"]) == 1 and np.isfinite(model["history"][0]["loss"])
    assert len(model["first_bn"]["gamma"]) == len(model["first_bn"]["beta"]) == 6
    assert (tmp_path / "checkpoints" / norm / "latest.json").is_file()
