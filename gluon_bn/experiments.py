"""Experiment configurations and runs: config in, trained models' record and plot out."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import mxnet as mx
import numpy as np
from mxnet import gluon, init

from .data import load_data_fashion_mnist, read_fashion_mnist
from .errors import UsageError
from .files import check_writable_dir
from .models import LABELS, NORMS, lenet
from .plots import plot_histories
from .record import environment, save_record
from .report import chapter_table
from .training import Epoch, train_ch5, try_gpu

__all__ = ["CHAPTER", "CONTEXTS", "ModelRun", "ReproduceConfig", "reproduce", "resolve_context",
           "train_model"]

#: The chapter's published run (GPU, lr 1.0, batch 256), epoch 5.
CHAPTER = {
    "scratch": {"loss": 0.3051, "train_acc": 0.890, "test_acc": 0.870},
    "gluon": {"loss": 0.3071, "train_acc": 0.889, "test_acc": 0.881},
}
CHAPTER_EPOCH = 5
CONTEXTS = ("cpu", "gpu", "auto")


@dataclass
class ReproduceConfig:
    """The chapter's settings by default: lr 1.0, 5 epochs, batch 256, Xavier init, SGD."""

    models: tuple[str, ...] = ("scratch", "gluon")
    epochs: int = 5
    lr: float = 1.0
    batch_size: int = 256
    ctx: str = "auto"
    seed: int = 0
    data_dir: str | None = None
    out: str = "results"
    num_train: int | None = None
    num_test: int | None = None

    def validate(self) -> "ReproduceConfig":
        """Raise UsageError naming the first setting that cannot work."""
        for norm in self.models:
            if norm not in NORMS:
                raise UsageError(f"unknown model {norm!r}: choose from {', '.join(NORMS)}")
        if not self.models:
            raise UsageError("no model to train: name at least one of " + ", ".join(NORMS))
        for name in ("epochs", "batch_size", "num_train", "num_test"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise UsageError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise UsageError(f"lr must be positive, got {self.lr!r}")
        if self.ctx not in CONTEXTS:
            raise UsageError(f"unknown context {self.ctx!r}: choose from {', '.join(CONTEXTS)}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_context(name: str) -> mx.Context:
    """'cpu', 'gpu' (must exist) or 'auto' (a GPU when MXNet sees one) to an MXNet context."""
    if name == "cpu":
        return mx.cpu()
    if name == "gpu":
        if mx.context.num_gpus() == 0:
            raise UsageError("--ctx gpu: MXNet sees no GPU (this mxnet build or machine has none); "
                             "install a CUDA build such as mxnet-cu112 on a GPU machine, or use --ctx cpu")
        return mx.gpu(0)
    if name == "auto":
        return try_gpu()
    raise UsageError(f"unknown context {name!r}: choose from {', '.join(CONTEXTS)}")


@dataclass
class ModelRun:
    """One trained model: its per-epoch history and the first BN layer's gamma and beta."""

    name: str
    history: list[Epoch]
    gamma: list[float] = field(default_factory=list)
    beta: list[float] = field(default_factory=list)
    wall_time: float = 0.0

    def to_dict(self) -> dict:
        return {"history": [e.to_dict() for e in self.history],
                "first_bn": {"gamma": self.gamma, "beta": self.beta},
                "wall_time": self.wall_time}


def seed_everything(seed: int) -> None:
    """Seed MXNet's and NumPy's generators so a CPU run repeats its numbers."""
    mx.random.seed(seed)
    np.random.seed(seed)


def train_model(norm: str, config: ReproduceConfig, ctx: mx.Context,
                log: Callable[[str], None] = print) -> ModelRun:
    """Build, initialise and train one LeNet exactly as the chapter does."""
    start = time.perf_counter()
    seed_everything(config.seed)
    train_iter, test_iter = load_data_fashion_mnist(
        config.batch_size, root=config.data_dir, seed=config.seed,
        num_train=config.num_train, num_test=config.num_test)
    net = lenet(norm)
    net.initialize(ctx=ctx, init=init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': config.lr})
    history = train_ch5(net, train_iter, test_iter, config.batch_size, trainer, ctx,
                        config.epochs, log=log)
    run = ModelRun(norm, history, wall_time=time.perf_counter() - start)
    if norm != "none":
        run.gamma = net[1].gamma.data().reshape((-1,)).asnumpy().tolist()
        run.beta = net[1].beta.data().reshape((-1,)).asnumpy().tolist()
    return run


def reproduce(config: ReproduceConfig, log: Callable[[str], None] = print) -> dict:
    """Train each configured model, print the chapter's lines, write record and plot."""
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
    started = time.perf_counter()
    runs: dict[str, ModelRun] = {}
    record_path, plot_path = out / "reproduce.json", out / "reproduce.png"
    extra = {"environment": environment(ctx),
             "data": {"directory": str(data.directory), "release": data.release},
             "chapter": {"epoch": CHAPTER_EPOCH, "results": CHAPTER}}
    for norm in config.models:
        log(f"\n== {LABELS[norm]} LeNet ==")
        run = runs[norm] = train_model(norm, config, ctx, log)
        if run.gamma:
            log(f"first BN layer (net[1]) gamma: {np.array2string(np.array(run.gamma), precision=4)}")
            log(f"first BN layer (net[1]) beta:  {np.array2string(np.array(run.beta), precision=4)}")
        save_record(record_path, "reproduce", config.to_dict(),
                    {name: r.to_dict() for name, r in runs.items()}, **extra,
                    complete=len(runs) == len(config.models),
                    wall_time=time.perf_counter() - started)
    plot_histories({name: r.history for name, r in runs.items()}, plot_path, reference=CHAPTER,
                   reference_epoch=CHAPTER_EPOCH,
                   title=f"LeNet on Fashion-MNIST, lr {config.lr}, batch {config.batch_size}, {ctx}")
    log("\n" + chapter_table({name: r.history for name, r in runs.items()}, CHAPTER, CHAPTER_EPOCH))
    log(f"\nwrote {record_path} and {plot_path}")
    return {"record": record_path, "plot": plot_path, "runs": runs}
