"""Several devices: --ctx lists, batch splitting, and what each BN kind does with its moving statistics."""

import tempfile
import warnings
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd

from gluon_bn import BatchNorm, lenet, load_data_fashion_mnist, train_ch5
from gluon_bn.models import seeded_lenet
from gluon_bn.runs.loop import evaluate_accuracy, make_trainer
from gluon_bn.runtime.devices import describe, parse_contexts, split_batch

TWO = [mx.cpu(0), mx.cpu(1)]


def test_parse_contexts_reads_kind_and_index():
    assert parse_contexts("cpu:0,cpu:1") == TWO
    assert parse_contexts(" cpu:3 ") == [mx.cpu(3)]
    assert describe(TWO) == "[cpu(0), cpu(1)]" and describe(mx.cpu(0)) == "cpu(0)"
    with pytest.raises(ValueError, match="listed twice"):
        parse_contexts("cpu:1,cpu:1")


def test_a_batch_smaller_than_the_device_count_goes_one_example_per_device():
    X, y = nd.arange(6).reshape((3, 2)), nd.arange(3)
    Xs, ys = split_batch(X, y, [mx.cpu(i) for i in range(5)])
    assert [s.shape[0] for s in Xs] == [1, 1, 1] and [s.context for s in ys] == [mx.cpu(0), mx.cpu(1), mx.cpu(2)]


def _shards():
    """Two shards whose feature means are 0 and 10 (the whole batch: 5)."""
    return [nd.array([[-1.0], [1.0]], ctx=mx.cpu(0)), nd.array([[9.0], [11.0]], ctx=mx.cpu(1))]


def _train_step(layer, shards):
    with autograd.record():
        outputs = [layer(X) for X in shards]
    autograd.backward(outputs)


def test_the_chapters_layer_chains_its_statistics_through_the_devices():
    """Its moving statistics are plain NDArrays, re-copied to each shard's device in turn: momentum
    applies once per device, each update sees one shard, and the result ends on the last device."""
    layer = BatchNorm(1, num_dims=2)
    layer.initialize(ctx=TWO)
    _train_step(layer, _shards())
    assert layer.moving_mean.asscalar() == pytest.approx(0.9 * (0.1 * 0) + 0.1 * 10)  # 1.0
    assert layer.moving_mean.context == mx.cpu(1)
    one = BatchNorm(1, num_dims=2)
    one.initialize(ctx=mx.cpu(0))
    _train_step(one, [nd.concat(*[s.as_in_context(mx.cpu(0)) for s in _shards()], dim=0)])
    assert one.moving_mean.asscalar() == pytest.approx(0.5)


def test_gluon_batchnorm_keeps_one_copy_per_device_and_saves_their_mean():
    layer = gluon.nn.BatchNorm(in_channels=1)
    layer.initialize(ctx=TWO)
    _train_step(layer, _shards())
    copies = [d.asscalar() for d in layer.running_mean.list_data()]
    assert copies == pytest.approx([0.0, 1.0])  # each from its own shard, momentum 0.9
    with tempfile.TemporaryDirectory() as folder:
        layer.save_parameters(str(Path(folder) / "p"))
        saved = nd.load(str(Path(folder) / "p"))["running_mean"].asscalar()
    assert saved == pytest.approx(0.5)


def test_one_context_in_a_list_trains_exactly_as_the_context_itself(real_data_dir):
    histories = []
    for ctx in (mx.cpu(0), [mx.cpu(0)]):
        train_iter, test_iter = load_data_fashion_mnist(128, root=real_data_dir, seed=3, num_train=512, num_test=256)
        net = seeded_lenet("gluon", ctx, seed=3)
        history = train_ch5(net, train_iter, test_iter, 128, make_trainer(net, 1.0), ctx, 2, log=lambda _: None)
        histories.append([(e.loss, e.train_acc, e.test_acc) for e in history])
    assert histories[0] == histories[1]


@pytest.mark.parametrize("norm", ["scratch", "gluon", "fast", "sync", "none"])
def test_every_lenet_trains_and_predicts_on_two_devices(norm, real_data_dir):
    train_iter, test_iter = load_data_fashion_mnist(64, root=real_data_dir, seed=0, num_train=256, num_test=100)
    net = seeded_lenet(norm, TWO, seed=0)
    lines = []
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        history = train_ch5(net, train_iter, test_iter, 64, make_trainer(net, 1.0), TWO, 1, log=lines.append)
    assert lines[0] == "training on [cpu(0), cpu(1)]" and np.isfinite(history[0].loss)
    assert not [w for w in warned if "not been updated" in str(w.message)]  # every device's gradient is used
    assert 0.0 <= evaluate_accuracy(test_iter, net, TWO) <= 1.0
    weights = [p.list_data() for p in net.collect_params().values() if p.grad_req != "null"]
    assert all(np.array_equal(w[0].asnumpy(), w[1].asnumpy()) for w in weights)  # one model, two copies


def test_lenet_sync_needs_the_device_count_only_for_sync():
    assert lenet("sync", num_devices=4)[1].num_devices == 4
