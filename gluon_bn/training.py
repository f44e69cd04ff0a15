"""The chapter's training loop (``train_ch5``) and accuracy, on any MXNet context."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Mapping, Sequence

import mxnet as mx
from d2l import mxnet as d2l
from mxnet import autograd, gluon
from tqdm import tqdm

from .bnstate import restore_stats, snapshot_stats
from .errors import Diverged, TrainingInterrupted

__all__ = ["Callback", "Epoch", "OnEpochEnd", "evaluate_accuracy", "history_rows", "train_ch5", "try_gpu"]

#: d2l's: gpu(i) when that GPU exists, else cpu().
try_gpu = d2l.try_gpu


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
        return (f"epoch {self.epoch}, loss {self.loss:.4f}, train acc {self.train_acc:.3f}, "
                f"test acc {self.test_acc:.3f}, time {self.time:.1f} sec")

    def to_dict(self) -> dict:
        return asdict(self)


def history_rows(history: Iterable) -> list[dict]:
    """Epochs as dicts, whether given as ``Epoch`` objects or as loaded from a record."""
    return [e if isinstance(e, Mapping) else e.to_dict() for e in history]


class Callback:
    """What ``train_ch5`` calls at its batch and epoch boundaries: subclass and override either.

    Checkpoints, Ctrl-C, the benchmarks' memory sampler and profiler, and the experiments'
    per-epoch measurements all hook in here; the chapter's loop itself stays as it was.
    """

    def on_batch_end(self, epoch: int, batch: int) -> bool:
        """Batch ``batch`` of epoch ``epoch`` (both from 1) has updated the model; True stops training here."""
        return False

    def on_epoch_end(self, result: Epoch, net: gluon.Block) -> None:
        """The epoch's line was printed; ``net`` is the model after it."""


class OnEpochEnd(Callback):
    """A callback from a function of (epoch result, net), run after every epoch."""

    def __init__(self, function: Callable[[Epoch, gluon.Block], None]):
        self.function = function

    def on_epoch_end(self, result: Epoch, net: gluon.Block) -> None:
        self.function(result, net)


def evaluate_accuracy(data_iter: Iterable, net: gluon.Block, ctx: mx.Context | None = None) -> float:
    """Fraction of examples in ``data_iter`` that ``net`` classifies right (prediction mode)."""
    ctx = ctx or mx.cpu()
    metric = d2l.Accumulator(2)  # correct predictions, examples
    for X, y in data_iter:
        X, y = X.as_in_context(ctx), y.as_in_context(ctx).astype('float32')
        metric.add((net(X).argmax(axis=1) == y).sum().asscalar(), y.size)
    return metric[0] / metric[1]


def train_ch5(net: gluon.Block, train_iter: Iterable, test_iter: Iterable, batch_size: int,
              trainer: gluon.Trainer, ctx: mx.Context, num_epochs: int, *,
              log: Callable[[str], None] = print, callbacks: Sequence[Callback] = (),
              start_epoch: int = 0, start_metric: Sequence[float] | None = None) -> list[Epoch]:
    """Train ``net`` as the chapter does, print its line each epoch, return the history.

    As in the chapter, ``trainer.step(batch_size)`` scales every step by the full
    batch size, the last partial batch included. A progress bar shows on a terminal.
    ``callbacks`` run after each batch and each epoch's line, in order; one that asks to stop
    after a batch raises ``TrainingInterrupted`` with the epoch's sums. A resumed run passes
    the epochs done (``start_epoch``) and the sums of a partial epoch (``start_metric``).
    A NaN or infinite loss raises ``Diverged`` and leaves no trace: no update from that batch,
    and the BN layers' moving statistics put back as they were before it.
    """
    log(f"training on {ctx}")
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    history = []
    for epoch in range(start_epoch, num_epochs):
        metric = d2l.Accumulator(3)  # summed loss, correct predictions, examples
        if start_metric is not None and epoch == start_epoch:
            metric.data = [float(v) for v in start_metric]
        timer = d2l.Timer()
        for X, y in tqdm(train_iter, desc=f"epoch {epoch + 1}", leave=False, disable=None):
            X, y = X.as_in_context(ctx), y.as_in_context(ctx)
            stats_before = snapshot_stats(net)  # the chapter's layer updates them in forward
            with autograd.record():
                y_hat = net(X)
                l = loss(y_hat, y).sum()
            l_sum = l.asscalar()
            batch = int(metric[2] // batch_size) + 1
            if not math.isfinite(l_sum):
                restore_stats(stats_before)
                raise Diverged(epoch + 1, batch, l_sum, trainer.learning_rate)
            l.backward()
            trainer.step(batch_size)
            y = y.astype('float32')
            metric.add(l_sum, (y_hat.argmax(axis=1) == y).sum().asscalar(), y.size)
            if any([callback.on_batch_end(epoch + 1, batch) for callback in callbacks]):  # each one sees it
                raise TrainingInterrupted(epoch, list(metric.data))
        test_acc = evaluate_accuracy(test_iter, net, ctx)
        result = Epoch(epoch + 1, metric[0] / metric[2], metric[1] / metric[2], test_acc,
                       timer.stop())
        history.append(result)
        log(result.line())
        for callback in callbacks:
            callback.on_epoch_end(result, net)
    return history
