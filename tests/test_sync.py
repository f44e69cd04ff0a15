"""Synchronized BN: k devices compute what one device computes on the whole batch; misuse is named, never a hang."""

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd

from gluon_bn import load_data_fashion_mnist
from gluon_bn.comparison.drift import copy_state
from gluon_bn.models import lenet, seeded_lenet
from gluon_bn.norms.bnstate import bn_layers, get_stats
from gluon_bn.norms.sync import SyncBatchNorm
from gluon_bn.runs.loop import make_trainer
from gluon_bn.runtime.devices import forward_shards, split_batch

LOSS = gluon.loss.SoftmaxCrossEntropyLoss()


def _step(net, X, y, ctx):
    """One recorded forward and backward of the chapter's loss on ``ctx``; the loss and the summed gradients."""
    Xs, ys = split_batch(X, y, ctx)
    with autograd.record():
        ls = [LOSS(y_hat, t).sum() for y_hat, t in zip(forward_shards(net, Xs), ys)]
    autograd.backward(ls)
    grads = [sum(g.asnumpy() for g in p.list_grad()) for p in net.collect_params().values() if p.grad_req != "null"]
    return sum(l.asscalar() for l in ls), grads


def _complete_shapes(nets_and_contexts, X):
    """One prediction pass, so deferred shapes are known before state is copied."""
    for net, ctx in nets_and_contexts:
        forward_shards(net, split_batch(X, X, ctx)[0])


def _stats(net):
    return np.concatenate([s for layer in bn_layers(net) for s in get_stats(layer)])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_sync_lenet_on_k_devices_equals_the_chapter_lenet_on_one_step_by_step(k, real_data_dir):
    contexts = [mx.cpu(i) for i in range(k)]
    train_iter, _ = load_data_fashion_mnist(128, root=real_data_dir, seed=0, num_train=1024, num_test=100)
    one = seeded_lenet("scratch", mx.cpu(0), seed=0)
    many = seeded_lenet("sync", contexts, seed=None)
    trainer = make_trainer(one, 1.0)
    _complete_shapes([(one, mx.cpu(0)), (many, contexts)], next(iter(train_iter))[0])
    for X, y in train_iter:
        copy_state(one, many)  # each step starts from the same state, so rounding cannot compound
        loss_many, grads_many = _step(many, X, y, contexts)
        loss_one, grads_one = _step(one, X, y, mx.cpu(0))
        assert abs(loss_many - loss_one) <= 1e-5 * abs(loss_one)
        # Compared as whole tensors: rounding can flip which of two nearly equal inputs a max-pool
        # window picks, moving one element's gradient (seen once: 0.01 in a tensor of norm ~50); and the
        # biases before BN have a true gradient of 0, so they get noise at ~4e-5 of the largest gradient.
        scale = max(np.abs(b).max() for b in grads_one)
        for a, b in zip(grads_many, grads_one):
            assert np.linalg.norm(a - b) <= 1e-3 * np.linalg.norm(b) + 2e-4 * scale
        np.testing.assert_allclose(_stats(many), _stats(one), rtol=1e-4, atol=1e-4)
        trainer.step(128)


def test_sync_lenet_trains_like_the_chapter_lenet_on_the_same_batches(real_data_dir):
    contexts = [mx.cpu(0), mx.cpu(1)]
    train_iter, _ = load_data_fashion_mnist(128, root=real_data_dir, seed=0, num_train=640, num_test=100)
    one = seeded_lenet("scratch", mx.cpu(0), seed=0)
    many = seeded_lenet("sync", contexts, seed=None)
    _complete_shapes([(one, mx.cpu(0)), (many, contexts)], next(iter(train_iter))[0])
    copy_state(one, many)
    trainers = make_trainer(one, 1.0), make_trainer(many, 1.0)
    for X, y in train_iter:
        loss_one, _ = _step(one, X, y, mx.cpu(0))
        loss_many, _ = _step(many, X, y, contexts)
        for trainer in trainers:
            trainer.step(128)
        assert abs(loss_many - loss_one) <= 1e-3 * abs(loss_one)
    np.testing.assert_allclose(_stats(many), _stats(one), rtol=1e-2, atol=1e-3)


def _two_shards():
    """Shards whose feature means are 0 and 10: the whole batch's mean is 5."""
    return [nd.array([[-1.0], [1.0]], ctx=mx.cpu(0)), nd.array([[9.0], [11.0]], ctx=mx.cpu(1))]


def test_moving_statistics_of_each_bn_kind_on_two_devices():
    shards = _two_shards()
    contexts = [mx.cpu(0), mx.cpu(1)]
    sync = SyncBatchNorm(1, num_dims=2, num_devices=2)
    sync.initialize(ctx=contexts)
    with autograd.record():
        sync(shards)
    assert sync.moving_mean.asscalar() == pytest.approx(0.5)  # one momentum step towards the batch's mean, 5
    assert sync.moving_var.asscalar() == pytest.approx(0.1 * 26)  # the batch's biased variance is 26


def test_misuse_is_named_not_hung():
    shards = _two_shards()
    layer = SyncBatchNorm(1, num_dims=2, num_devices=3)
    layer.initialize(ctx=[mx.cpu(0), mx.cpu(1)])
    with pytest.raises(ValueError, match=r"num_devices=3\) got 2 shard.*num_devices=2"):
        with autograd.record():
            layer(shards)
    layer = SyncBatchNorm(1, num_dims=2, num_devices=2)
    layer.initialize(ctx=[mx.cpu(0), mx.cpu(1)])
    with pytest.raises(ValueError, match="share a device"):
        with autograd.record():
            layer([shards[0], shards[0]])
    with pytest.raises(ValueError, match="num_devices=2 applies to synchronized BN only"):
        lenet("gluon", num_devices=2)


def test_one_shard_of_several_in_training_names_the_call_to_make():
    """A d2l-style loop on 2 devices calls the net shard by shard: the error says to pass the list."""
    layer = SyncBatchNorm(1, num_dims=2, num_devices=2)
    layer.initialize(ctx=[mx.cpu(0), mx.cpu(1)])
    with pytest.raises(ValueError, match=r"got 1 shard: .*call the net on the list, net\(shards\)"):
        with autograd.record():
            [layer(x) for x in _two_shards()]


def test_prediction_uses_the_one_set_of_moving_statistics_on_every_device():
    shards = _two_shards()
    layer = SyncBatchNorm(1, num_dims=2, num_devices=2)
    layer.initialize(ctx=[mx.cpu(0), mx.cpu(1)])
    with autograd.record():
        layer(shards)
    out = layer(shards)  # prediction mode
    for X, Y in zip(shards, out):
        assert Y.context == X.context
        want = (X.asnumpy() - 0.5) / np.sqrt(2.6 + 1e-5)
        np.testing.assert_allclose(Y.asnumpy(), want, rtol=1e-5)
