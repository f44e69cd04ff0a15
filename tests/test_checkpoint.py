"""Checkpoints: a round trip restores everything, a crash while saving keeps the previous one,
and the MXNet private attributes they read are still where gluon_bn/reliability/checkpoint.py looks."""

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, init, nd

from gluon_bn import lenet
from gluon_bn.reliability.checkpoint import Checkpointer


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


def _second_save_fails(tmp_path, monkeypatch, save, match: str) -> Checkpointer:
    """One checkpoint saved, then a second whose ``nd.save`` is ``save``: it must raise OSError matching
    ``match`` and leave the first the newest and only one."""
    net, trainer = _momentum_setup(mx.cpu())
    net(nd.zeros((2, 1, 28, 28)))
    ckpt = Checkpointer(tmp_path)
    ckpt.save(net, trainer, {"epochs_done": 1})
    monkeypatch.setattr(nd, "save", save)
    with pytest.raises(OSError, match=match):
        ckpt.save(net, trainer, {"epochs_done": 2})
    monkeypatch.undo()
    assert ckpt.meta()["epochs_done"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000001", "latest.json"]
    return ckpt


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise OSError("disk full")

    ckpt = _second_save_fails(tmp_path, monkeypatch, crash, "disk full")
    ckpt.load(*_momentum_setup(mx.cpu()), mx.cpu())


def test_a_file_mxnet_left_short_is_caught_not_checkpointed(tmp_path, monkeypatch):
    """MXNet does not check the close of what ``nd.save`` wrote, so a full disk can leave the file empty
    with no error: the save must notice, and the previous checkpoint stay the newest."""
    save = nd.save

    def short(path, arrays):
        save(path, arrays)
        if path.endswith("stats"):
            open(path, "wb").close()  # what a full disk leaves behind the unchecked close

    _second_save_fails(tmp_path, monkeypatch, short, "written incompletely")


_MISSING = object()


def _private(owner, name: str, attribute: str, kind=None):
    """``owner.attribute``, or a failure saying an MXNet upgrade renamed it."""
    value = getattr(owner, attribute, _MISSING)
    if value is _MISSING:
        pytest.fail(
            f"{name}.{attribute} is missing: an MXNet upgrade renamed or removed it, and "
            f"gluon_bn/reliability/checkpoint.py (_structural_names, _read_trainer, _write_trainer) reads it to "
            f"checkpoint the optimizer without pickle; update those three functions",
            pytrace=False,
        )
    if kind is not None and not isinstance(value, kind):
        pytest.fail(
            f"{name}.{attribute} is a {type(value).__name__}, not a {kind.__name__}: an MXNet upgrade "
            f"changed it, and gluon_bn/reliability/checkpoint.py (_structural_names, _read_trainer, _write_trainer) "
            f"relies on it; update those three functions",
            pytrace=False,
        )
    return value


def test_the_private_trainer_attributes_checkpoints_use_are_still_there():
    """MXNet's public ``Trainer.save_states`` pickles, so checkpoint.py reads these instead."""
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(4), gluon.nn.Dense(2))
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    X, y = nd.ones((3, 5)), nd.array([0, 1, 0])
    with autograd.record():
        l = gluon.loss.SoftmaxCrossEntropyLoss()(net(X), y).sum()
    l.backward()
    trainer.step(3)

    optimizer = _private(trainer, "gluon.Trainer", "_optimizer")
    updaters = _private(trainer, "gluon.Trainer", "_updaters", list)
    assert updaters, "gluon.Trainer._updaters is empty after a step"
    states = _private(updaters[0], "gluon.Trainer._updaters[0]", "states", dict)
    synced = _private(updaters[0], "gluon.Trainer._updaters[0]", "states_synced", dict)
    params = _private(trainer, "gluon.Trainer", "_params", list)
    param2idx = _private(trainer, "gluon.Trainer", "_param2idx", dict)
    counts = _private(optimizer, "gluon.Trainer._optimizer", "_index_update_count", dict)
    num_update = _private(optimizer, "gluon.Trainer._optimizer", "num_update", int)
    collect = _private(net, "gluon.Block", "_collect_params_with_prefix")

    # What checkpoint.py assumes of them: momentum buffers per parameter index, indices into
    # _params that _param2idx maps names to, one update counted per parameter, names by place.
    assert sorted(states) == sorted(counts) == list(range(len(params))) == sorted(param2idx.values())
    assert all(isinstance(state, nd.NDArray) for state in states.values())
    assert all(synced.get(index) for index in states)
    assert {param2idx[p.name]: p for p in params} == dict(enumerate(params))
    assert set(counts.values()) == {1} and num_update == 1
    by_place = collect()
    assert sorted(by_place) == ["0.bias", "0.weight", "1.bias", "1.weight"]
    assert {p.name for p in by_place.values()} == {p.name for p in params}
