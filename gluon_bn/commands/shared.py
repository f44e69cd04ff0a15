"""What every command needs: the run settings and their ``--quick`` presets, ``prepare``, and supervised training.

``train_model`` trains one LeNet with the chapter's loop and adds what a command promises its
user: a checkpoint after every epoch and on Ctrl-C, ``--resume``, and a refusal to resume
with other settings.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import mxnet as mx
import numpy as np
from mxnet import gluon

from ..chapter.data import ArrayLoader, load_data_fashion_mnist, read_fashion_mnist
from ..chapter.models import seeded_lenet
from ..chapter.training import Callback, Epoch, history_rows, make_trainer, train_ch5, try_gpu
from ..comparison.bnstate import bn_layers
from ..norms import label
from ..parallel.devices import Contexts, as_list, check_threads, forward_shards, parse_contexts, split_batch
from ..parallel.distributed import Job, WorkerSync
from ..reliability import faults
from ..reliability.checkpoint import Checkpointer
from ..reliability.errors import Diverged, Interrupted, TrainingInterrupted, UsageError
from ..reliability.files import check_writable_dir
from ..reliability.record import environment
from ..runtime import threads
from ..runtime.compiled import compile_net

__all__ = ["CONTEXTS", "QUICK_ENV", "ModelRun", "RunConfig", "TrainConfig", "prepare", "resolve_context",
           "train_model"]

#: --ctx names for one device; several are listed as kind:index, e.g. cpu:0,cpu:1 (``devices.parse_contexts``).
CONTEXTS = ("cpu", "gpu", "auto")
#: Set to 1 to run every command (and the notebooks) on its quick preset: a small real subset.
QUICK_ENV = "GLUON_BN_QUICK"
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class RunConfig:
    """Settings every command shares; the chapter's by default.

    ``QUICK`` is the class's preset for ``--quick`` (or ``$GLUON_BN_QUICK=1``): seconds on a real
    subset. ``POSITIVE`` names the fields that must be positive integers when set.
    """

    lr: float = 1.0
    batch_size: int = 256
    ctx: str = "auto"
    seed: int = 0
    data_dir: str | None = None
    out: str = "results"
    num_train: int | None = None
    num_test: int | None = None
    threads: int | None = None  # MXNet's CPU operator threads; None: as set up (see gluon_bn.runtime.threads)
    quick: bool = False

    QUICK: ClassVar[dict] = {"num_train": 2048, "num_test": 1000}
    POSITIVE: ClassVar[tuple[str, ...]] = ("batch_size", "num_train", "num_test", "threads")

    def resolved(self):
        """With ``quick`` (or ``$GLUON_BN_QUICK=1``): the ``QUICK`` preset for every field still at its default."""
        if not (self.quick or os.environ.get(QUICK_ENV) == "1"):
            return self
        defaults = type(self)()
        return replace(self, quick=True, **{k: v for k, v in self.QUICK.items() if getattr(self, k) == getattr(defaults, k)})

    def validate(self):
        """Raise UsageError naming the first setting that cannot work."""
        for name in self.POSITIVE:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise UsageError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not 0 < self.lr <= FLOAT32_MAX:
            raise UsageError(f"lr must be positive and at most {FLOAT32_MAX:.3g} (MXNet passes it to "
                             f"its optimizer as float32), got {self.lr!r}")
        resolve_context(self.ctx)
        return self

    def loaders(self, **changes) -> tuple[ArrayLoader, ArrayLoader]:
        """The chapter's (train_iter, test_iter) for these settings; ``changes`` override any of them."""
        settings = {"batch_size": self.batch_size, "root": self.data_dir, "seed": self.seed,
                    "num_train": self.num_train, "num_test": self.num_test, **changes}
        return load_data_fashion_mnist(settings.pop("batch_size"), **settings)

    def to_dict(self) -> dict:
        """The settings as the record stores them."""
        return asdict(self)

    @classmethod
    def field_names(cls) -> set[str]:
        """The settings this config has (the CLI passes only those)."""
        return {f.name for f in fields(cls)}


@dataclass
class TrainConfig(RunConfig):
    """Settings of the commands that train LeNets for several epochs."""

    epochs: int = 5
    hybridize: bool = True  # compile the model's Gluon layers (same numbers, faster)

    QUICK: ClassVar[dict] = {**RunConfig.QUICK, "epochs": 1}
    POSITIVE: ClassVar[tuple[str, ...]] = (*RunConfig.POSITIVE, "epochs")


def resolve_context(name: str) -> Contexts:
    """'cpu', 'gpu' (must exist) or 'auto' (a GPU when MXNet sees one) to an MXNet context;
    a list such as 'cpu:0,cpu:1' to a list of contexts (data parallel; one entry: that context)."""
    if name == "cpu":
        return mx.cpu()
    if name == "gpu":
        if mx.context.num_gpus() == 0:
            raise UsageError("--ctx gpu: MXNet sees no GPU (this mxnet build or machine has none); "
                             "install a CUDA build such as mxnet-cu112 on a GPU machine, or use --ctx cpu")
        return mx.gpu(0)
    if name == "auto":
        return try_gpu()
    if ":" not in name:
        raise UsageError(f"unknown context {name!r}: choose from {', '.join(CONTEXTS)}, "
                         "or list devices as kind:index, e.g. cpu:0,cpu:1")
    try:
        contexts = parse_contexts(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return contexts[0] if len(contexts) == 1 else contexts


def prepare(config: RunConfig, log: Callable[[str], None] = print) -> tuple[Contexts, Path, dict]:
    """Check everything a run needs before any training: settings, context, --out, data.

    Returns the context (a list when several), the output folder, and what every record says about the run.
    """
    config.validate()
    ctx = resolve_context(config.ctx)
    out = Path(config.out)
    try:
        check_writable_dir(out)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror}); "
                         "choose a writable folder") from None
    data = read_fashion_mnist(config.data_dir)
    log(f"Fashion-MNIST ({data.release} release) from {data.directory}")
    thread_setup = threads.setup()
    if config.threads is not None and config.threads != thread_setup["operator_threads"]:
        raise UsageError(f"threads {config.threads}: MXNet's CPU operators run with {thread_setup['operator_threads']}, "
                         f"fixed when MXNet loaded; set {threads.ENV}={config.threads} before starting Python "
                         "(the gluon-bn command's --threads does that for you)")
    try:
        check_threads(as_list(ctx), thread_setup["operator_threads"])
    except ValueError as exc:
        raise UsageError(f"--ctx {config.ctx}: {exc}") from None
    extra = {"environment": {**environment(ctx), "threads": thread_setup},
             "data": {"directory": str(data.directory), "release": data.release}}
    return ctx, out, extra


@dataclass
class ModelRun:
    """One trained model: its per-epoch history and the first BN layer's gamma and beta."""

    name: str
    history: list[Epoch]
    gamma: list[float] = field(default_factory=list)
    beta: list[float] = field(default_factory=list)
    wall_time: float = 0.0
    workers: list | None = None  # in a kvstore job: per epoch, each worker's time and the BN statistics' spread

    def to_dict(self) -> dict:
        return {"history": history_rows(self.history),
                "first_bn": {"gamma": self.gamma, "beta": self.beta},
                "wall_time": self.wall_time, **({"workers": self.workers} if self.workers is not None else {})}


#: Settings a checkpoint must share with the run that resumes it.
RESUME_KEYS = ("lr", "batch_size", "seed", "num_train", "num_test")


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

    def __init__(self, norm: str, save: Callable[[int], None] | None, history: list[Epoch], requested: list,
                 rank: int | None = None):
        self.norm, self.save, self.history, self.requested, self.rank = norm, save, history, requested, rank

    def on_batch_end(self, epoch: int, batch: int) -> bool:
        where = {} if self.rank is None else {"rank": self.rank}
        faults.reached("batch", model=self.norm, epoch=epoch, batch=batch, **where)
        return bool(self.requested)

    def on_epoch_end(self, result: Epoch, net: gluon.Block) -> None:
        self.history.append(result)
        if self.save is not None:
            self.save(result.epoch)


def train_model(norm: str, config: TrainConfig, ctx: Contexts, log: Callable[[str], None] = print,
                net: gluon.Block | None = None, callbacks: Sequence[Callback] = (),
                checkpoints: Path | None = None, resume: bool = False, extras: dict | None = None,
                job: Job | None = None) -> ModelRun:
    """Train one LeNet exactly as the chapter does (a fresh seeded one unless ``net`` is given).

    The batch order depends only on ``config.seed``, so models trained with one config see
    the same batches. With ``checkpoints`` the state is saved after every epoch (after the
    ``callbacks`` saw it) and on Ctrl-C (at the next batch boundary); with ``resume`` training
    continues from there. ``extras``, a dict the caller fills per epoch, is saved and restored
    with the checkpoint. A ``Diverged`` error carries the history so far as ``.history``.
    In a ``job`` (kvstore ``dist_sync``) each worker trains on its share of every batch; rank 0
    tests, checkpoints and reports, and every worker resumes from rank 0's checkpoint; a stop
    there is the launcher's, so no partial epoch is saved.
    """
    start = time.perf_counter()
    net = net if net is not None else seeded_lenet(norm, ctx, config.seed)
    train_iter, all_tests = config.loaders()
    test_iter = all_tests
    sync = None
    if job is not None:
        train_iter.shard(job.rank, job.num_workers)
        test_iter = all_tests if job.rank == 0 else None
        sync = WorkerSync(job, test_iter, config.loaders(seed=config.seed + 1000)[0], ctx) if job.rank == 0 \
            else WorkerSync(job)
        callbacks = [*callbacks, sync]
    if config.hybridize:
        compile_net(net)
    trainer = make_trainer(net, config.lr) if job is None else job.trainer(net, config.lr)
    ckpt = Checkpointer(checkpoints) if checkpoints is not None else None
    writes = ckpt is not None and (job is None or job.rank == 0)
    history: list[Epoch] = []
    start_epoch, start_metric = 0, None
    if ckpt is not None and resume and ckpt.exists():
        _check_resumable(ckpt, config)
        forward_shards(net, split_batch(*next(iter(all_tests)), ctx)[0])  # complete deferred shapes before loading
        meta = ckpt.load(net, trainer, ctx)
        train_iter.restore(meta["loader"])
        history = [Epoch(**e) for e in meta["history"]]
        if extras is not None:
            extras.update(meta.get("extras") or {})
        start_epoch, start_metric = meta["epochs_done"], meta.get("partial")
        log(f"resuming from {ckpt.directory} after epoch {start_epoch}"
            + (f" and {int(start_metric[2])} examples of epoch {start_epoch + 1}" if start_metric else ""))
        for e in history:
            log(e.line())

    def save(epochs_done: int, partial: list[float] | None = None) -> None:
        ckpt.save(net, trainer, {"model": norm, "settings": {k: getattr(config, k) for k in RESUME_KEYS},
                                 "epochs_done": epochs_done, "partial": partial,
                                 "history": history_rows(history), "loader": train_iter.state(),
                                 "extras": extras})

    with _ctrl_c_as_flag() if ckpt is not None and job is None else contextlib.nullcontext([]) as requested:
        supervisor = _Supervisor(norm, save if writes else None, history, requested,
                                 rank=None if job is None else job.rank)
        try:
            train_ch5(net, train_iter, test_iter, config.batch_size, trainer, ctx, config.epochs, log=log,
                      callbacks=[*callbacks, supervisor], start_epoch=start_epoch, start_metric=start_metric)
        except Diverged as exc:
            exc.history = history
            raise
        except TrainingInterrupted as exc:
            save(exc.epoch, exc.metric)
            raise Interrupted(f"interrupted during epoch {exc.epoch + 1} of {label(norm)}; its state is "
                              f"saved in {ckpt.directory}: run the same command with --resume to "
                              "continue") from None
    run = ModelRun(norm, history, wall_time=time.perf_counter() - start,
                   workers=sync.epochs if sync is not None else None)
    first_bn = bn_layers(net)[:1]  # net[1] in the chapter's LeNet
    if first_bn:
        run.gamma = first_bn[0].gamma.list_data()[0].reshape((-1,)).asnumpy().tolist()
        run.beta = first_bn[0].beta.list_data()[0].reshape((-1,)).asnumpy().tolist()
    return run


def _flag_value(value) -> str:
    """A setting as the command line shows it (an unset subset is the whole split)."""
    return "all" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _check_resumable(ckpt: Checkpointer, config: TrainConfig) -> None:
    """Refuse to continue a checkpoint made with other settings."""
    saved = ckpt.meta()["settings"]
    differ = [f"--{k.replace('_', '-')} {_flag_value(saved[k])} (now {_flag_value(getattr(config, k))})"
              for k in RESUME_KEYS if saved[k] != getattr(config, k)]
    if differ:
        raise UsageError(f"--resume: the checkpoint in {ckpt.directory} was made with " + ", ".join(differ)
                         + "; rerun with those settings, or without --resume (or another --out) to start afresh")
