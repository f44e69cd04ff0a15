"""Supervised training of one LeNet: the chapter's loop plus what a command promises its user.

``train_model`` reads as its four steps: build (net, loaders, trainer), resume (from a
checkpoint made with the same settings), train (``train_ch5``, checkpointing after every epoch
and on Ctrl-C), collect (the history and the first norm layer's gamma and beta). Only a run that
is one worker of a kvstore job touches the distributed code.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from mxnet import gluon

from ..chapter.data import ArrayLoader
from ..chapter.fashion_mnist import FashionMNIST
from ..chapter.training import Epoch, history_rows
from ..errors import Diverged, Interrupted, TrainingInterrupted, UsageError
from ..models import seeded_lenet
from ..norms import label
from ..norms.bnstate import norm_layers
from ..reliability import faults
from ..reliability.checkpoint import Checkpointer
from ..runtime.compiled import compile_net
from ..runtime.devices import Contexts, forward_shards, split_batch
from .loop import Callback, make_trainer, train_ch5
from .settings import TrainConfig

if TYPE_CHECKING:
    from ..parallel.distributed import Job

__all__ = ["RESUME_KEYS", "ModelRun", "train_model"]

#: Settings a checkpoint must share with the run that resumes it.
RESUME_KEYS = ("lr", "batch_size", "seed", "num_train", "num_test")


@dataclass
class ModelRun:
    """One trained model: its per-epoch history and the first norm layer's gamma and beta (BN, LN or GN)."""

    name: str
    history: list[Epoch]
    gamma: list[float] = field(default_factory=list)
    beta: list[float] = field(default_factory=list)
    wall_time: float = 0.0
    workers: list | None = None  # in a kvstore job: per epoch, each worker's time and the BN statistics' spread

    def to_dict(self) -> dict:
        return {
            "history": history_rows(self.history),
            "first_bn": {"gamma": self.gamma, "beta": self.beta},
            "wall_time": self.wall_time,
            **({"workers": self.workers} if self.workers is not None else {}),
        }


@dataclass
class _Training:
    """What the steps hand on: the built parts, then where training starts."""

    net: gluon.Block
    train_iter: ArrayLoader
    test_iter: ArrayLoader | None  # None on a worker other than rank 0, which does not test
    all_tests: ArrayLoader  # the test split, whose first batch completes deferred shapes on resume
    trainer: gluon.Trainer
    callbacks: list[Callback]
    rank: int | None = None  # this worker's rank in a kvstore job
    workers: object = None  # the job's WorkerSync, which collects per-worker numbers
    history: list[Epoch] = field(default_factory=list)
    start_epoch: int = 0
    start_metric: list[float] | None = None


def train_model(
    norm: str,
    config: TrainConfig,
    ctx: Contexts,
    log: Callable[[str], None] = print,
    net: gluon.Block | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoints: Path | None = None,
    resume: bool = False,
    extras: dict | None = None,
    job: Job | None = None,
    data: FashionMNIST | None = None,
) -> ModelRun:
    """Train one LeNet exactly as the chapter does, with checkpoints, ``--resume`` and Ctrl-C handled.

    The batch order depends only on ``config.seed``, so models trained with one config see the same batches.

    Args:
        norm: the LeNet's normalization, a name in ``gluon_bn.norms.NORMS``.
        config: the run's settings (lr, batch size, epochs, subset, seed, compiled or not).
        ctx: a context, or a list of them (data parallel).
        log: where the chapter's per-epoch lines go.
        net: a model to train instead of a fresh seeded LeNet.
        callbacks: hooks into the loop, run before the checkpoint of each epoch.
        checkpoints: a folder: the state is saved after every epoch and on Ctrl-C (at the next batch).
        resume: continue from the checkpoint in ``checkpoints``; other settings are refused.
        extras: a dict the caller fills per epoch, saved and restored with the checkpoint.
        job: a kvstore ``dist_sync`` job: this worker trains on its share of every batch; rank 0
            tests, checkpoints and reports, and every worker resumes from rank 0's checkpoint.
        data: Fashion-MNIST already read (``prepare`` reads it once per run).

    Raises ``Diverged`` carrying the history so far as ``.history``, and ``Interrupted`` on Ctrl-C.
    """
    start = time.perf_counter()
    run = _build(norm, config, ctx, net, list(callbacks), job, data)
    ckpt = Checkpointer(checkpoints) if checkpoints is not None else None
    if ckpt is not None and resume and ckpt.exists():
        _resume(run, ckpt, config, ctx, extras, log)
    _train(run, norm, config, ctx, ckpt, extras, log)
    return _collect(run, norm, time.perf_counter() - start)


def _build(
    norm: str,
    config: TrainConfig,
    ctx: Contexts,
    net: gluon.Block | None,
    callbacks: list[Callback],
    job: Job | None,
    data: FashionMNIST | None,
) -> _Training:
    """The net (a fresh seeded one unless given), the loaders, the trainer; in a job, this worker's part."""
    net = net if net is not None else seeded_lenet(norm, ctx, config.seed)
    train_iter, test_iter = config.loaders(data=data)
    if config.hybridize:
        compile_net(net)
    if job is None:
        return _Training(net, train_iter, test_iter, test_iter, make_trainer(net, config.lr), callbacks)
    train_iter.shard(job.rank, job.num_workers)
    if job.rank == 0:
        sync = job.worker_sync(test_iter, config.loaders(seed=config.seed + 1000, data=data)[0], ctx)
    else:
        sync = job.worker_sync()
    return _Training(
        net,
        train_iter,
        test_iter if job.rank == 0 else None,
        test_iter,
        job.trainer(net, config.lr),
        [*callbacks, sync],
        rank=job.rank,
        workers=sync,
    )


def _resume(
    run: _Training,
    ckpt: Checkpointer,
    config: TrainConfig,
    ctx: Contexts,
    extras: dict | None,
    log: Callable[[str], None],
) -> None:
    """Load the checkpoint into the net, trainer and loader; refuse one made with other settings."""
    _check_resumable(ckpt, config)
    forward_shards(run.net, split_batch(*next(iter(run.all_tests)), ctx)[0])  # complete deferred shapes before loading
    meta = ckpt.load(run.net, run.trainer, ctx)
    run.train_iter.restore(meta["loader"])
    run.history = [Epoch(**e) for e in meta["history"]]
    if extras is not None:
        extras.update(meta.get("extras") or {})
    run.start_epoch, run.start_metric = meta["epochs_done"], meta.get("partial")
    log(
        f"resuming from {ckpt.directory} after epoch {run.start_epoch}"
        + (f" and {int(run.start_metric[2])} examples of epoch {run.start_epoch + 1}" if run.start_metric else "")
    )
    for e in run.history:
        log(e.line())


def _train(
    run: _Training,
    norm: str,
    config: TrainConfig,
    ctx: Contexts,
    ckpt: Checkpointer | None,
    extras: dict | None,
    log: Callable[[str], None],
) -> None:
    """``train_ch5`` from where ``run`` starts, saving after every epoch and on Ctrl-C (rank 0 only, in a job)."""

    def save(epochs_done: int, partial: list[float] | None = None) -> None:
        ckpt.save(
            run.net,
            run.trainer,
            {
                "model": norm,
                "settings": {k: getattr(config, k) for k in RESUME_KEYS},
                "epochs_done": epochs_done,
                "partial": partial,
                "history": history_rows(run.history),
                "loader": run.train_iter.state(),
                "extras": extras,
            },
        )

    writes = ckpt is not None and run.rank in (None, 0)
    # In a job a stop is the launcher's, so no partial epoch is saved: Ctrl-C is a flag only alone.
    with _ctrl_c_as_flag() if ckpt is not None and run.rank is None else contextlib.nullcontext([]) as requested:
        supervisor = _Supervisor(norm, save if writes else None, run.history, requested, rank=run.rank)
        try:
            train_ch5(
                run.net,
                run.train_iter,
                run.test_iter,
                config.batch_size,
                run.trainer,
                ctx,
                config.epochs,
                log=log,
                callbacks=[*run.callbacks, supervisor],
                start_epoch=run.start_epoch,
                start_metric=run.start_metric,
            )
        except Diverged as exc:
            exc.history = run.history
            raise
        except TrainingInterrupted as exc:
            save(exc.epoch, exc.metric)
            raise Interrupted(
                f"interrupted during epoch {exc.epoch + 1} of {label(norm)}; its state is "
                f"saved in {ckpt.directory}: run the same command with --resume to "
                "continue"
            ) from None


def _collect(run: _Training, norm: str, wall_time: float) -> ModelRun:
    """The history, the first norm layer's gamma and beta (``net[1]`` in the chapter's LeNet), the workers' numbers."""
    result = ModelRun(
        norm, run.history, wall_time=wall_time, workers=run.workers.epochs if run.workers is not None else None
    )
    first = norm_layers(run.net)[:1]
    if first:
        result.gamma = first[0].gamma.list_data()[0].reshape((-1,)).asnumpy().tolist()
        result.beta = first[0].beta.list_data()[0].reshape((-1,)).asnumpy().tolist()
    return result


@contextlib.contextmanager
def _ctrl_c_as_flag():
    """Turn Ctrl-C into a flag that training checks at the next batch boundary."""
    requested: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = signal.signal(signal.SIGINT, lambda *_: requested.append(True))
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)


class _Supervisor(Callback):
    """Keeps the history, checkpoints after every epoch, stops at a batch boundary on Ctrl-C."""

    def __init__(
        self,
        norm: str,
        save: Callable[[int], None] | None,
        history: list[Epoch],
        requested: list,
        rank: int | None = None,
    ):
        self.norm, self.save, self.history, self.requested, self.rank = norm, save, history, requested, rank

    def on_batch_end(self, epoch: int, batch: int) -> bool:
        where = {} if self.rank is None else {"rank": self.rank}
        faults.reached("batch", model=self.norm, epoch=epoch, batch=batch, **where)
        return bool(self.requested)

    def on_epoch_end(self, result: Epoch, net: gluon.Block) -> None:
        self.history.append(result)
        if self.save is not None:
            self.save(result.epoch)


def _flag_value(value) -> str:
    """A setting as the command line shows it (an unset subset is the whole split)."""
    return "all" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _check_resumable(ckpt: Checkpointer, config: TrainConfig) -> None:
    """Refuse to continue a checkpoint made with other settings."""
    saved = ckpt.meta()["settings"]
    differ = [
        f"--{k.replace('_', '-')} {_flag_value(saved[k])} (now {_flag_value(getattr(config, k))})"
        for k in RESUME_KEYS
        if saved[k] != getattr(config, k)
    ]
    if differ:
        raise UsageError(
            f"--resume: the checkpoint in {ckpt.directory} was made with "
            + ", ".join(differ)
            + "; rerun with those settings, or without --resume (or another --out) to start afresh"
        )
