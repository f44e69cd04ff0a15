"""The chapter's training loop, ``train_ch5``, as the book's ``gb.train_ch5`` wrote it, and its log line.

Every command runs the hardened loop instead (``gluon_bn.runs.loop.train_ch5``, which is also
``gluon_bn.train_ch5``): it gives the same history and adds what long runs need.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Mapping

import mxnet as mx
from d2l import mxnet as d2l
from mxnet import autograd, gluon

from ..runtime.gpus import try_gpu

__all__ = ["Epoch", "evaluate_accuracy", "history_rows", "train_ch5", "try_gpu"]


@dataclass(frozen=True)
class Epoch:
    """One line of the chapter's log: what ``train_ch5`` prints and records per epoch."""

    epoch: int
    loss: float
    train_acc: float
    test_acc: float
    time: float

    def line(self) -> str:
        """The chapter's log line for this epoch."""
        return (
            f"epoch {self.epoch}, loss {self.loss:.4f}, train acc {self.train_acc:.3f}, "
            f"test acc {self.test_acc:.3f}, time {self.time:.1f} sec"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def history_rows(history: Iterable) -> list[dict]:
    """Epochs as dicts, whether given as ``Epoch`` objects or as loaded from a record."""
    return [e if isinstance(e, Mapping) else e.to_dict() for e in history]


def evaluate_accuracy(data_iter: Iterable, net: gluon.Block, ctx: mx.Context) -> float:
    """Fraction of examples in ``data_iter`` that ``net`` classifies right, on ``ctx``."""
    metric = d2l.Accumulator(2)  # correct predictions, examples
    for X, y in data_iter:
        X, y = X.as_in_context(ctx), y.as_in_context(ctx).astype("float32")
        metric.add((net(X).argmax(axis=1) == y).sum().asscalar(), y.size)
    return metric[0] / metric[1]


def train_ch5(net, train_iter, test_iter, batch_size, trainer, ctx, num_epochs) -> list[Epoch]:
    """Train and test ``net`` on ``ctx`` as the chapter does, printing its line per epoch; returns the lines."""
    print("training on", ctx)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    history = []
    for epoch in range(num_epochs):
        metric, timer = d2l.Accumulator(3), d2l.Timer()  # summed loss, correct predictions, examples
        for X, y in train_iter:
            X, y = X.as_in_context(ctx), y.as_in_context(ctx)
            with autograd.record():
                y_hat = net(X)
                l = loss(y_hat, y).sum()
            l.backward()
            trainer.step(batch_size)
            y = y.astype("float32")
            metric.add(l.asscalar(), (y_hat.argmax(axis=1) == y).sum().asscalar(), y.size)
        test_acc = evaluate_accuracy(test_iter, net, ctx)
        history.append(Epoch(epoch + 1, metric[0] / metric[2], metric[1] / metric[2], test_acc, timer.stop()))
        print(history[-1].line())
    return history
