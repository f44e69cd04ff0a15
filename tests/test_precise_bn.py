"""Precise BN: recompute_bn_stats gives the population statistics, swap_bn_stats swaps them in and out."""

import mxnet as mx
import numpy as np
import pytest
from mxnet import init

from gluon_bn import lenet, load_data_fashion_mnist
from gluon_bn.norms.bnstate import bn_layers, get_stats, swap_bn_stats
from gluon_bn.norms.precise_bn import recompute_bn_stats
from gluon_bn.runtime.compiled import compile_net, is_compiled


@pytest.mark.parametrize("norm", ["scratch", "gluon"])
def test_recompute_bn_stats_gives_the_population_statistics(norm, real_data_dir):
    mx.random.seed(0)
    net = lenet(norm)
    net.initialize(init=init.Xavier())
    train_iter, test_iter = load_data_fashion_mnist(128, num_train=512, num_test=256)
    first = bn_layers(net)[0]
    seen = recompute_bn_stats(net, train_iter, num_batches=None)
    assert seen == 512
    # The first BN layer's input is the first convolution's output: its statistics over all 512 images.
    X = np.concatenate([x.asnumpy() for x, _ in train_iter])
    conv = net[0](mx.nd.array(X)).asnumpy().astype(np.float64)
    mean, var = get_stats(first)
    np.testing.assert_allclose(mean, conv.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(var, conv.var(axis=(0, 2, 3)), rtol=1e-3, atol=1e-6)

    # swap_bn_stats puts other statistics in place, hands back the ones it replaced, and swaps them back.
    recomputed = [get_stats(layer) for layer in bn_layers(net)]
    probe = next(iter(test_iter))[0]
    logits = net(probe).asnumpy()
    neutral = [(np.zeros_like(mean), np.ones_like(var)) for mean, var in recomputed]
    replaced = swap_bn_stats(net, neutral)
    for ((mean, var),), (want_mean, want_var) in zip(replaced, recomputed):  # one copy: one device
        np.testing.assert_array_equal(mean, want_mean)
        np.testing.assert_array_equal(var, want_var)
    for layer in bn_layers(net):
        np.testing.assert_array_equal(get_stats(layer)[1], 1.0)
    assert np.abs(net(probe).asnumpy() - logits).max() > 1e-3  # prediction uses the statistics swapped in
    swap_bn_stats(net, replaced)
    for layer, (want_mean, want_var) in zip(bn_layers(net), recomputed):
        np.testing.assert_array_equal(get_stats(layer)[0], want_mean)
        np.testing.assert_array_equal(get_stats(layer)[1], want_var)
    np.testing.assert_array_equal(net(probe).asnumpy(), logits)


def test_recompute_bn_stats_refuses_nets_without_bn(real_data_dir):
    net = lenet("none")
    net.initialize()
    train_iter, _ = load_data_fashion_mnist(64, num_train=64)
    with pytest.raises(ValueError, match="no BN layer"):
        recompute_bn_stats(net, train_iter)


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
    assert is_compiled(net)


def test_swapping_statistics_keeps_each_devices_copy(real_data_dir):
    from mxnet import autograd, gluon

    from gluon_bn.norms.bnstate import layer_stat_copies
    from gluon_bn.runtime.devices import forward_shards, split_batch

    ctx = [mx.cpu(0), mx.cpu(1)]
    net = lenet("gluon")
    net.initialize(ctx=ctx)
    train_iter, _ = load_data_fashion_mnist(64, root=real_data_dir, seed=0, num_train=64, num_test=64)
    Xs, ys = split_batch(*next(iter(train_iter)), ctx)
    with autograd.record():
        ls = [gluon.loss.SoftmaxCrossEntropyLoss()(y_hat, y) for y_hat, y in zip(forward_shards(net, Xs), ys)]
    autograd.backward(ls)  # nn.BatchNorm updates each device's copy from its own shard
    before = [layer_stat_copies(layer) for layer in bn_layers(net)]
    assert not np.array_equal(before[0][0][0], before[0][1][0])
    replaced = swap_bn_stats(net, [(np.zeros_like(m), np.ones_like(v)) for (m, v), _ in before], ctx)
    assert all(
        np.array_equal(layer_stat_copies(layer)[1][0], np.zeros_like(m))
        for layer, ((m, _), _) in zip(bn_layers(net), before)
    )
    swap_bn_stats(net, replaced, ctx)
    after = [layer_stat_copies(layer) for layer in bn_layers(net)]
    for a, b in zip(before, after):
        for (am, av), (bm, bv) in zip(a, b):
            assert np.array_equal(am, bm) and np.array_equal(av, bv)
