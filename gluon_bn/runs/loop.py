"""The hardened ``train_ch5`` every command runs: the chapter's loop plus what long runs need.

Beside the book's loop (``gluon_bn.chapter.training.train_ch5``) it adds, without changing a
number: a context list (data parallel, each device a shard of every batch), a diverging batch
rolled back (no update, BN's moving statistics put back), callbacks at batch and epoch ends
(checkpoints, Ctrl-C, measurements), a resumed start mid-epoch, and a progress bar.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import mxnet as mx
from d2l import mxnet as d2l
from mxnet import autograd, gluon
from tqdm import tqdm

from ..chapter.training import Epoch
from ..errors import Diverged, TrainingInterrupted
from ..norms.bnstate import restore_stats, snapshot_stats
from ..runtime.devices import Contexts, describe, forward_shards, split_batch

__all__ = ["Callback", "OnEpochEnd", "evaluate_accuracy", "learned_parameters", "make_trainer", "train_ch5"]


class Callback:
    """What ``train_ch5`` calls at its batch and epoch boundaries: subclass and override either.

    Checkpoints, Ctrl-C, the benchmarks' memory sampler and profiler, and the experiments'
    per-epoch measurements all hook in here, so measuring never changes the numbers.
    """

    def on_batch_end(self, epoch: int, batch: int) -> bool:
        """Batch ``batch`` of epoch ``epoch`` (both from 1) has updated the model; True stops training here."""
        return False

    def on_train_end(self, epoch: int, net: gluon.Block, sums: list[float]) -> None:
        """Epoch ``epoch``'s training is done, its test pass not yet begun; may change ``sums``
        (summed loss, correct predictions, examples) in place, e.g. to add up several workers'."""

    def on_epoch_end(self, result: Epoch, net: gluon.Block) -> None:
        """The epoch's line was printed; ``net`` is the model after it."""


class OnEpochEnd(Callback):
    """A callback from a function of (epoch result, net), run after every epoch."""

    def __init__(self, function: Callable[[Epoch, gluon.Block], None]):
        self.function = function

    def on_epoch_end(self, result: Epoch, net: gluon.Block) -> None:
        self.function(result, net)


def learned_parameters(net: gluon.Block) -> dict:
    """The parameters training updates (a gradient is computed for them): a Trainer's share of the net."""
    return {name: p for name, p in net.collect_params().items() if p.grad_req != "null"}


def make_trainer(net: gluon.Block, lr: float) -> gluon.Trainer:
    """The chapter's SGD trainer over the parameters training updates; on one device it steps as the chapter's.

    On several devices each device keeps its optimizer beside its copy of the weights
    (``update_on_kvstore=False``), where checkpoints read it; and the trainer leaves out what
    has no gradient, ``nn.BatchNorm``'s moving statistics among them, since its first step would
    broadcast the first device's copy to every device (after ``--resume``, over each device's own).
    """
    return gluon.Trainer(learned_parameters(net), "sgd", {"learning_rate": lr}, update_on_kvstore=False)


def _correct(y_hats: Iterable, ys: Iterable) -> float:
    """Right predictions summed over the shards."""
    return sum((y_hat.argmax(axis=1) == y.astype("float32")).sum().asscalar() for y_hat, y in zip(y_hats, ys))


def evaluate_accuracy(data_iter: Iterable, net: gluon.Block, ctx: Contexts | None = None) -> float:
    """Fraction of examples in ``data_iter`` that ``net`` classifies right (prediction mode).

    With several contexts each batch is split across them, and each device predicts its shard.
    """
    ctx = ctx or mx.cpu()
    metric = d2l.Accumulator(2)  # correct predictions, examples
    for X, y in data_iter:
        Xs, ys = split_batch(X, y, ctx)
        metric.add(_correct(forward_shards(net, Xs), ys), y.size)
    return metric[0] / metric[1]


def train_ch5(
    net: gluon.Block,
    train_iter: Iterable,
    test_iter: Iterable | None,
    batch_size: int,
    trainer: gluon.Trainer,
    ctx: Contexts,
    num_epochs: int,
    *,
    log: Callable[[str], None] = print,
    callbacks: Sequence[Callback] = (),
    start_epoch: int = 0,
    start_metric: Sequence[float] | None = None,
) -> list[Epoch]:
    """The chapter's ``train_ch5``, hardened: same numbers, plus devices, rollback, callbacks and resume.

    As in the chapter, ``trainer.step(batch_size)`` scales every step by the full batch size,
    the last partial batch included. A progress bar shows on a terminal. A NaN or infinite loss
    raises ``Diverged`` and leaves no trace: no update from that batch, and the BN layers'
    moving statistics put back as they were before it.

    Args:
        net: the model (on ``ctx``; on a list of contexts, data parallel).
        train_iter: the training batches, (X, y) NDArrays.
        test_iter: the test batches; None (a worker other than the one that reports) gives NaN test accuracy.
        batch_size: what ``trainer.step`` divides by, as in the chapter.
        trainer: a ``gluon.Trainer`` over the net's parameters.
        ctx: a context, or a list of them.
        num_epochs: the epoch to stop after (counting any done before ``start_epoch``).
        log: where the chapter's per-epoch line goes.
        callbacks: run after each batch and each epoch's line, in order; one that asks to stop
            after a batch raises ``TrainingInterrupted`` with the epoch's sums.
        start_epoch: epochs already done (a resumed run).
        start_metric: the sums of a partial epoch (a run resumed mid-epoch).
    """
    log(f"training on {describe(ctx)}")
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    history = []
    for epoch in range(start_epoch, num_epochs):
        metric = d2l.Accumulator(3)  # summed loss, correct predictions, examples
        if start_metric is not None and epoch == start_epoch:
            metric.data = [float(v) for v in start_metric]
        timer = d2l.Timer()
        batch = round(metric[2] / batch_size)  # batches done: a resumed epoch's too
        for X, y in tqdm(train_iter, desc=f"epoch {epoch + 1}", leave=False, disable=None):
            batch += 1
            Xs, ys = split_batch(X, y, ctx)
            stats_before = snapshot_stats(net)  # the chapter's layer updates them in forward
            with autograd.record():
                y_hats = forward_shards(net, Xs)
                ls = [loss(y_hat, y).sum() for y_hat, y in zip(y_hats, ys)]
            l_sum = sum(l.asscalar() for l in ls)
            if not math.isfinite(l_sum):
                restore_stats(stats_before)
                raise Diverged(epoch + 1, batch, l_sum, trainer.learning_rate)
            autograd.backward(ls)
            trainer.step(batch_size)
            metric.add(l_sum, _correct(y_hats, ys), y.size)
            if any([callback.on_batch_end(epoch + 1, batch) for callback in callbacks]):  # each one sees it
                raise TrainingInterrupted(epoch, list(metric.data))
        for callback in callbacks:
            callback.on_train_end(epoch + 1, net, metric.data)
        test_acc = evaluate_accuracy(test_iter, net, ctx) if test_iter is not None else float("nan")
        result = Epoch(epoch + 1, metric[0] / metric[2], metric[1] / metric[2], test_acc, timer.stop())
        history.append(result)
        log(result.line())
        for callback in callbacks:
            callback.on_epoch_end(result, net)
    return history
