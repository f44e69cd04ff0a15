"""``gluon-bn reproduce``: the chapter's BN LeNets with its settings, next to its published numbers.

Config in; the chapter's log lines, the first BN layer's gamma and beta, a table beside the
book's numbers, a record (``reproduce.json``) and the training curves (``reproduce.png``) out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..chapter.published import CHAPTER, CHAPTER_EPOCH, chapter_table
from ..norms import NORMS, label
from ..reliability.errors import Diverged, Interrupted, UsageError
from ..reliability.record import save_record
from ..reports.plots import plot_histories
from ..runs.prepare import prepare
from ..runs.settings import TrainConfig
from ..runs.supervised import ModelRun, train_model

__all__ = ["ReproduceConfig", "run"]


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
            log(f"first BN layer (net[1]) gamma: {np.array2string(np.array(trained.gamma), precision=4)}")
            log(f"first BN layer (net[1]) beta:  {np.array2string(np.array(trained.beta), precision=4)}")
        write_record()
    if job is not None:
        from ..parallel.distributed import disconnect

        disconnect()
    histories = {name: r.history for name, r in runs.items()}
    if not reports:
        return {"runs": runs}
    plot_histories(
        histories,
        plot_path,
        reference=CHAPTER,
        reference_epoch=CHAPTER_EPOCH,
        title=f"LeNet on Fashion-MNIST, lr {config.lr}, batch {config.batch_size}, {ctx}",
    )
    log("\n" + chapter_table(histories))
    log(f"\nwrote {record_path} and {plot_path}")
    return {"record": record_path, "plot": plot_path, "runs": runs}


def _join_job(config: ReproduceConfig, log: Callable[[str], None]):
    """Join the kvstore job this worker belongs to (settings checked first, so every worker stops alike);
    only rank 0 logs."""
    from ..parallel.distributed import connect

    job = connect(config.validate().kvstore)
    log(f"kvstore {config.kvstore}: worker rank {job.rank} of {job.num_workers}")
    return job, (log if job.rank == 0 else lambda _: None)
