"""``gluon-bn reproduce``: the chapter's BN LeNets with its settings, next to its published numbers.

Options and config in; the chapter's log lines, the first norm layer's gamma and beta, a table beside
the book's numbers, a record (``reproduce.json``) and the training curves (``reproduce.png``) out.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np

from ..chapter.published import CHAPTER, CHAPTER_EPOCH
from ..errors import Diverged, Interrupted, UsageError
from ..norms import NORMS, label
from ..parallel.distributed import KVSTORES, connect, disconnect
from ..reliability.record import save_record
from ..reports.plots import plot_histories
from ..reports.tables import chapter_table
from ..runs.arguments import config_from, run_arguments
from ..runs.prepare import prepare
from ..runs.settings import TrainConfig
from ..runs.supervised import ModelRun, train_model

__all__ = ["ReproduceConfig", "add_arguments", "config", "run"]


def _model_choices() -> dict[str, tuple[str, ...]]:
    """--model: every registered norm, or both of the chapter's (read when the parser is built)."""
    return {**{name: (name,) for name in NORMS}, "both": tuple(CHAPTER)}


@dataclass
class ReproduceConfig(TrainConfig):
    """The chapter's two BN LeNets (or the ones named) with its settings."""

    models: tuple[str, ...] = tuple(CHAPTER)
    resume: bool = False
    kvstore: str | None = None  # "dist_sync": one worker of a job started by ``gluon-bn launch``

    def validate(self) -> "ReproduceConfig":
        if not self.models:
            raise UsageError("no model to train: name at least one of " + ", ".join(NORMS))
        for norm in self.models:
            if norm not in NORMS:
                raise UsageError(f"unknown model {norm!r}: choose from {', '.join(NORMS)}")
        if self.kvstore is not None and len(self.models) != 1:
            raise UsageError(
                f"--kvstore {self.kvstore} trains one model per job (a process has one kvstore, "
                "and a Trainer keys it by its parameters' indices): give --model scratch, gluon, ..."
            )
        super().validate()
        return self


HELP = "train the chapter's BN LeNets on Fashion-MNIST and compare with the book"
DESCRIPTION = (
    "Train LeNet with the from-scratch BatchNorm and with nn.BatchNorm using the "
    "chapter's settings; print the chapter's log lines, the first BN layer's gamma "
    "and beta, and a table next to the chapter's published numbers; write a JSON "
    "record and a PNG of the training curves into --out."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``gluon-bn reproduce`` options."""
    parser.add_argument(
        "--model",
        choices=_model_choices(),
        default="both",
        help="which LeNet: from-scratch BN, nn.BatchNorm, no BN, FastBatchNorm, synchronized BN, LayerNorm, "
        "GroupNorm, or scratch and gluon",
    )
    run_arguments(parser, ReproduceConfig())
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoints in --out (written after every epoch and on Ctrl-C)",
    )
    parser.add_argument(
        "--kvstore",
        choices=KVSTORES,
        default=None,
        help="train as one worker of a job over MXNet's parameter server (see gluon-bn launch)",
    )


def config(args: argparse.Namespace) -> ReproduceConfig:
    """The options as a config: --model names one norm, or both of the chapter's."""
    return config_from(ReproduceConfig, args, models=_model_choices()[args.model])


def run(config: ReproduceConfig, log: Callable[[str], None] = print) -> dict:
    """Train each configured model, print the chapter's lines, write record and plot."""
    config = config.resolved()
    job, log = _join_job(config, log) if config.kvstore else (None, log)
    reports = job is None or job.rank == 0  # rank 0 reports for the job
    ctx, out, extra, data = prepare(config, log)
    extra["chapter"] = {"epoch": CHAPTER_EPOCH, "results": CHAPTER}
    if job is not None:
        extra["distributed"] = {"kvstore": config.kvstore, "workers": job.num_workers, "servers": job.num_servers}
    started = time.perf_counter()
    runs: dict[str, ModelRun] = {}
    record_path, plot_path = out / "reproduce.json", out / "reproduce.png"

    def write_record(**status) -> None:
        if not reports:
            return
        save_record(
            record_path,
            "reproduce",
            config.to_dict(),
            {name: r.to_dict() for name, r in runs.items()},
            **extra,
            complete=len(runs) == len(config.models),
            **status,
            wall_time=time.perf_counter() - started,
        )

    for norm in config.models:
        log(f"\n== {label(norm)} LeNet ==")
        try:
            trained = runs[norm] = train_model(
                norm, config, ctx, log, checkpoints=out / "checkpoints" / norm, resume=config.resume, job=job, data=data
            )
        except Diverged as exc:
            write_record(diverged={"model": norm, "epoch": exc.epoch, "batch": exc.batch, "loss": str(exc.loss)})
            raise
        except Interrupted:
            write_record(interrupted=norm)
            raise
        if trained.gamma:
            first = f"first {label(norm) if NORMS[norm].per_example else 'BN'} layer (net[1])"
            log(f"{first} gamma: {np.array2string(np.array(trained.gamma), precision=4)}")
            log(f"{first} beta:  {np.array2string(np.array(trained.beta), precision=4)}")
        write_record()
    if job is not None:
        disconnect()
    histories = {name: r.history for name, r in runs.items()}
    if not reports:
        return {"runs": runs, "record": None, "status": 0}
    fig = plot_histories(
        histories,
        plot_path,
        reference=CHAPTER,
        reference_epoch=CHAPTER_EPOCH,
        title=f"LeNet on Fashion-MNIST, lr {config.lr}, batch {config.batch_size}, {ctx}",
    )
    plt.close(fig)
    log("\n" + chapter_table(histories))
    log(f"\nwrote {record_path} and {plot_path}")
    return {"record": record_path, "plot": plot_path, "runs": runs, "status": 0}


def _join_job(config: ReproduceConfig, log: Callable[[str], None]):
    """Join the kvstore job this worker belongs to (settings checked first, so every worker stops alike);
    only rank 0 logs."""
    job = connect(config.validate().kvstore)
    log(f"kvstore {config.kvstore}: worker rank {job.rank} of {job.num_workers}")
    return job, (log if job.rank == 0 else lambda _: None)
