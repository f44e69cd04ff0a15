"""Data parallel over processes with MXNet's parameter server (kvstore ``dist_sync``, ps-lite): a worker's side.

A process learns its part in a job from the environment ``gluon-bn launch`` (or MXNet's documented
manual recipe) sets: ``DMLC_ROLE``, ``DMLC_PS_ROOT_URI``/``PORT``, ``DMLC_NUM_SERVER``/``WORKER``.
Gradients are summed by the servers; this module adds what a chapter run needs beside them:
the epoch's sums over all workers, and the BN layers' moving statistics gathered and averaged
(a Trainer skips them: they have no gradient).
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass, field
from typing import Iterable

import mxnet as mx
import numpy as np
from mxnet import gluon, nd

from ..chapter.training import Epoch
from ..errors import UsageError
from ..norms.bnstate import bn_layers, layer_stat_copies, set_layer_stat_copies, stat_copies, swap_bn_stats
from ..norms.precise_bn import recompute_bn_stats
from ..runs.loop import Callback, evaluate_accuracy, learned_parameters

__all__ = ["KVSTORES", "Job", "ServerSGD", "WorkerSync", "connect", "disconnect", "job"]

KVSTORES = ("dist_sync",)
#: Keys of this module's own arrays in the kvstore, far above a Trainer's (its parameters' indices).
_KEY_BASE = 1_000_000

_job: "Job | None" = None


@dataclass
class Job:
    """This worker's place in the job and the kvstore they share."""

    kv: mx.kv.KVStore
    rank: int
    num_workers: int
    num_servers: int
    _keys: int = 0

    def _new_key(self, shape: tuple) -> int:
        """A fresh kvstore key for an array of ``shape`` (every worker asks in the same order)."""
        key = _KEY_BASE + self._keys
        self._keys += 1
        self.kv.init(key, nd.zeros(shape))
        return key

    def sum(self, values: np.ndarray, key: int | None = None) -> tuple[np.ndarray, int]:
        """``values`` summed over all workers (a push and a pull); returns the sum and the key to reuse."""
        values = np.asarray(values, dtype=np.float64)
        key = self._new_key(values.shape) if key is None else key
        self.kv.push(key, nd.array(values, dtype="float32"))
        out = nd.zeros(values.shape)
        self.kv.pull(key, out=out)
        return out.asnumpy().astype(np.float64), key

    def trainer(self, net: gluon.Block, lr: float) -> gluon.Trainer:
        """The chapter's SGD over the job: workers push gradients, the servers sum them and update.

        The update runs on the servers (MXNet's default for ``dist_sync``): with the update on the
        workers, MXNet 1.9.1's Trainer can pull the first gradient sum into the weights, because
        its first weight broadcast and first gradient push share a key (seen here in 2 of 6 runs).
        """
        return gluon.Trainer(learned_parameters(net), ServerSGD(learning_rate=lr), kvstore=self.kv)

    def worker_sync(self, test_iter: Iterable | None = None, train_iter: Iterable | None = None, ctx=None):
        """This worker's per-epoch callback; the reporting worker passes its test and re-estimation batches."""
        return WorkerSync(self, test_iter, train_iter, ctx)

    def gather(self, vector: np.ndarray, key: int | None = None) -> tuple[np.ndarray, int]:
        """Every worker's ``vector`` as the rows of one matrix (each worker fills its row of a sum)."""
        vector = np.asarray(vector, dtype=np.float64).reshape(-1)
        rows = np.zeros((self.num_workers, vector.size))
        rows[self.rank] = vector
        return self.sum(rows, key)


@mx.optimizer.register
class ServerSGD(mx.optimizer.SGD):
    """The chapter's SGD, run by the servers on the Trainer's keys; on this module's own keys the
    servers keep what the workers pushed, summed (a server applies its optimizer to every key)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.aggregate_num = 0  # one key per call, so each call can tell the two kinds of key apart

    def update(self, index, weight, grad, state):
        if index >= _KEY_BASE:
            weight[:] = grad
        else:
            super().update(index, weight, grad, state)

    def update_multi_precision(self, index, weight, grad, state):
        if index >= _KEY_BASE:
            weight[:] = grad
        else:
            super().update_multi_precision(index, weight, grad, state)


def job() -> Job | None:
    """This process's job, once ``connect`` joined one; None in a single-process run."""
    return _job


def disconnect() -> None:
    """Leave the job now, while MXNet is whole: a kvstore left to the interpreter's exit can abort
    the process ("terminate called without an active exception") as its threads are torn down."""
    global _job
    if _job is not None:
        _job.kv, _job = None, None  # the last reference: MXNet frees the kvstore here
        gc.collect()  # and any trainer still holding it


def connect(kvstore: str) -> Job:
    """Join the job this process was started in (blocks until every node is up)."""
    global _job
    if kvstore not in KVSTORES:
        raise UsageError(f"--kvstore {kvstore}: choose from {', '.join(KVSTORES)}")
    if os.environ.get("DMLC_ROLE") != "worker":
        raise UsageError(
            f"--kvstore {kvstore} runs in a job of several processes: start it with "
            f"`gluon-bn launch --workers N -- COMMAND ... --kvstore {kvstore}`"
        )
    if _job is None:
        kv = mx.kv.create(kvstore)
        _job = Job(kv, kv.rank, kv.num_workers, int(os.environ.get("DMLC_NUM_SERVER", "1")))
    return _job


def average_bn_stats(job: Job, net: gluon.Block, keys: list | None = None) -> tuple[np.ndarray, list]:
    """Give every worker the mean over workers of each BN layer's moving statistics.

    Returns every worker's statistics before averaging (one row per worker, all layers
    concatenated, as ``gather`` gives them) and the keys to reuse next time.
    """
    rows, key = job.gather(stat_copies(net)[0], None if keys is None else keys[0])
    _set_stats_vector(net, rows.mean(axis=0))
    return rows, [key]


def _set_stats_vector(net: gluon.Block, vector: np.ndarray) -> None:
    """Give every BN layer (every device's copy) its part of ``vector``: each layer's mean, then variance."""
    start = 0
    for layer in bn_layers(net):
        copies = layer_stat_copies(layer)
        size = copies[0][0].size
        mean_var = (vector[start : start + size], vector[start + size : start + 2 * size])
        start += 2 * size
        set_layer_stat_copies(layer, [mean_var] * len(copies), layer.gamma.list_ctx()[0])


def statistics_accuracy(
    net: gluon.Block, rows: np.ndarray, test_iter: Iterable, train_iter: Iterable, ctx, num_batches: int = 50
) -> dict:
    """Test accuracy with each worker's own statistics, and with statistics re-estimated over training batches.

    The statistics are re-estimated with ``recompute_bn_stats``; the model's statistics are put back.
    Returns the accuracy per worker (``"per_worker"``) and with the re-estimated ones (``"re_estimated"``).

    Args:
        net: the model, its statistics the workers' mean.
        rows: every worker's statistics, one row per worker (as ``average_bn_stats`` returns them):
            each BN layer's mean, then variance, all layers concatenated.
        test_iter: the test batches the accuracies are measured on.
        train_iter: the training batches the statistics are re-estimated from.
        ctx: where the net runs, a context or a list of them.
        num_batches: the most training batches the re-estimation uses.
    """
    saved = swap_bn_stats(net)
    try:
        per_worker = []
        for row in rows:
            _set_stats_vector(net, row)
            per_worker.append(evaluate_accuracy(test_iter, net, ctx))
        recompute_bn_stats(net, train_iter, num_batches=num_batches, ctx=ctx)
        return {"per_worker": per_worker, "re_estimated": evaluate_accuracy(test_iter, net, ctx)}
    finally:
        swap_bn_stats(net, saved, ctx)


def workers_apart(rows: np.ndarray) -> float:
    """How far the workers' statistics are apart: the largest relative distance of a row from their mean."""
    mean = rows.mean(axis=0)
    scale = max(float(np.linalg.norm(mean)), 1e-12)
    return float(max(np.linalg.norm(row - mean) for row in rows) / scale)


@dataclass
class WorkerSync(Callback):
    """After each epoch's training, before its test pass and checkpoint: the epoch's sums over all
    workers, each worker's training time, and one set of BN statistics (the workers' mean)."""

    job: Job
    test_iter: Iterable | None = None  # the reporting worker's: test accuracy with each worker's statistics
    train_iter: Iterable | None = None  # batches to re-estimate the statistics from
    ctx: object = None
    epochs: list = field(default_factory=list)  # per epoch: worker times, BN spread, per-worker stats
    _keys: dict = field(default_factory=dict)
    _started: float = field(default_factory=time.perf_counter)

    def on_train_end(self, epoch: int, net: gluon.Block, sums: list[float]) -> None:
        seconds = time.perf_counter() - self._started
        total, self._keys["sums"] = self.job.sum(sums, self._keys.get("sums"))
        sums[:] = total.tolist()
        times, self._keys["times"] = self.job.gather([seconds], self._keys.get("times"))
        entry = {"epoch": epoch, "worker_train_s": times[:, 0].tolist()}
        if bn_layers(net):
            rows, self._keys["stats"] = average_bn_stats(self.job, net, self._keys.get("stats"))
            entry.update(bn_spread=workers_apart(rows), worker_stats=rows.tolist())
        self.epochs.append(entry)

    def on_epoch_end(self, result: Epoch, net: gluon.Block) -> None:
        entry = self.epochs[-1]
        if self.test_iter is not None and "worker_stats" in entry:
            entry["test_acc"] = {
                "averaged": result.test_acc,
                **statistics_accuracy(net, np.array(entry["worker_stats"]), self.test_iter, self.train_iter, self.ctx),
            }
        self._started = time.perf_counter()
