"""``gluon-bn exercise NAME``: one of the chapter's exercises (or precise BN) over several seeds.

Config in; every variant of the exercise (from :mod:`gluon_bn.experiments.exercises`) trained for every seed
with the chapter's loop; a table, a conclusion drawn from the run's numbers, a plot, and
``exercise-NAME.json``/``.md``/``.png`` out. The record is rewritten after every run, so an
interrupted exercise keeps what it did, and ``--resume`` continues it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable, ClassVar

import mxnet as mx
from mxnet import gluon

from ..chapter.models import seeded_lenet
from ..chapter.training import Callback, Epoch, history_rows
from ..experiments.exercises import EXERCISES, Exercise, Variant, fmt_mean_std, summarize
from ..parallel.devices import Contexts, as_list, describe
from ..reliability.errors import Diverged, UsageError
from ..reliability.files import atomic_write_text
from ..reliability.record import load_record, save_record
from ..reports.plots import plot_exercise
from ..reports.tables import markdown_table
from .shared import TrainConfig, prepare, resolve_context, train_model

__all__ = ["ExerciseConfig", "run", "summary_table"]


@dataclass
class ExerciseConfig(TrainConfig):
    """One of the chapter's exercises over several seeds."""

    name: str = "no-bias"
    epochs: int | None = None  # None: the exercise's own default
    seeds: int = 3
    resume: bool = False
    precise_batches: int = 100

    QUICK: ClassVar[dict] = {"epochs": 1, "num_train": 1024, "num_test": 500, "seeds": 2, "precise_batches": 4}
    POSITIVE: ClassVar[tuple[str, ...]] = (*TrainConfig.POSITIVE, "seeds", "precise_batches")

    def validate(self) -> "ExerciseConfig":
        if self.name not in EXERCISES:
            raise UsageError(f"unknown exercise {self.name!r}: choose from {', '.join(EXERCISES)}")
        super().validate()
        return self


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text).strip("-")


class _PerEpoch(Callback):
    """Collects the exercise's own per-epoch measurements into the run's extras."""

    def __init__(self, exercise: Exercise, config: ExerciseConfig, ctx: mx.Context, extras: dict):
        self.exercise, self.config, self.ctx, self.extras = exercise, config, ctx, extras

    def on_epoch_end(self, result: Epoch, net: gluon.Block) -> None:
        for key, value in self.exercise.on_epoch(result, net, self.config, self.ctx).items():
            self.extras.setdefault("per_epoch", {}).setdefault(key, []).append(value)


def _train_variant(exercise: Exercise, variant: Variant, config: ExerciseConfig, ctx: Contexts, checkpoints,
                   log: Callable[[str], None]) -> dict:
    """Train one variant for one seed (``config.seed``); its record entry, diverged or not."""
    log(f"\n== {variant.name}, seed {config.seed} ==")
    net = seeded_lenet(variant.norm, ctx, config.seed, **variant.options)
    extras: dict = {}
    per_epoch = [_PerEpoch(exercise, config, ctx, extras)] if exercise.on_epoch else []
    entry = {"variant": variant.name, "group": variant.group, "seed": config.seed, "lr": config.lr,
             "devices": len(as_list(ctx)), "batch_size": config.batch_size}
    try:
        trained = train_model(variant.norm, config, ctx, log, net=net, callbacks=per_epoch, extras=extras,
                              checkpoints=checkpoints, resume=config.resume)
        if exercise.measure is not None:
            extras.update(exercise.measure(net, config, ctx))
        entry.update(status="trained", history=history_rows(trained.history))
    except Diverged as exc:
        log(f"diverged: {exc}")
        entry.update(status="diverged", history=history_rows(exc.history),
                     diverged={"epoch": exc.epoch, "batch": exc.batch, "loss": str(exc.loss)})
    return {**entry, "extras": extras}


def run(config: ExerciseConfig, log: Callable[[str], None] = print) -> dict:
    """Run one exercise: every variant for every seed, then its table, conclusion and plot.

    With ``resume`` the finished runs in the record are kept and an unfinished one continues
    from its last checkpoint.
    """
    config = config.resolved().validate()
    exercise = EXERCISES[config.name]
    config = replace(config, epochs=config.epochs or exercise.epochs, num_train=config.num_train or exercise.num_train)
    ctx, out, extra = prepare(config, log)
    stem = out / f"exercise-{exercise.name}"
    record_path, markdown_path, plot_path = (stem.with_suffix(s) for s in (".json", ".md", ".png"))
    done = {}
    if config.resume and record_path.exists():
        done = {(r["variant"], r["seed"]): r for r in load_record(record_path)["results"]["runs"]}
    started = time.perf_counter()
    runs: list[dict] = []
    log(f"exercise {exercise.name}: {exercise.question}")
    for variant in exercise.variants(config):
        for seed in range(config.seed, config.seed + config.seeds):
            settings = variant_config(config, variant, seed, as_list(ctx)[0].device_type)
            runs.append(done.get((variant.name, seed)) or _train_variant(
                exercise, variant, settings, ctx if variant.devices is None else resolve_context(settings.ctx),
                out / "checkpoints" / stem.name / f"{_slug(variant.name)}-seed{seed}", log))
            save_record(record_path, "exercise", config.to_dict(), {"runs": runs}, **extra, complete=False,
                        wall_time=time.perf_counter() - started)
    summary = summarize(runs)
    conclusion = exercise.conclude(summary, runs)
    table = summary_table(summary)
    details = exercise.details(runs) if exercise.details else ""
    plot_exercise(summary, runs, plot_path, x_axis=exercise.x_axis,
                  title=f"exercise {exercise.name}: {config.epochs} epochs, {config.seeds} seeds, {describe(ctx)}")
    text = "\n\n".join(part for part in (
        f"# Exercise `{exercise.name}`", f"*{exercise.question}*",
        f"{config.epochs} epochs per run, seeds {config.seed}..{config.seed + config.seeds - 1}, lr {config.lr:g} "
        f"unless the row says otherwise, batch {config.batch_size}, on {describe(ctx)} unless the row names devices"
        + (f", first {config.num_train:,} training images" if config.num_train else "")
        + (f", first {config.num_test:,} test images" if config.num_test else "")
        + ". Numbers are the last epoch's, mean ± std over seeds.", table, details,
        f"**Conclusion (from this run's numbers).** {conclusion}", f"![plot]({plot_path.name})") if part)
    atomic_write_text(markdown_path, text + "\n")
    save_record(record_path, "exercise", config.to_dict(), {"runs": runs, "summary": summary,
                                                            "conclusion": conclusion},
                **extra, complete=True, wall_time=time.perf_counter() - started)
    log("\n" + table + ("\n\n" + details if details else "") + "\n\nConclusion: " + conclusion)
    log(f"\nwrote {record_path}, {markdown_path} and {plot_path}")
    return {"summary": summary, "runs": runs, "conclusion": conclusion, "record": record_path,
            "markdown": text, "plot": plot_path}


def variant_config(config: ExerciseConfig, variant: Variant, seed: int, kind: str = "cpu") -> ExerciseConfig:
    """The run settings for one variant and seed (its devices are the first of the run's ``kind``)."""
    changes = {"seed": seed, "lr": variant.lr if variant.lr is not None else config.lr,
               "batch_size": variant.batch_size or config.batch_size}
    if variant.devices is not None:
        changes["ctx"] = ",".join(f"{kind}:{i}" for i in range(variant.devices))
    return replace(config, **changes)


def summary_table(summary: list[dict]) -> str:
    """Per variant: learning rate, seeds, divergences, last-epoch numbers as mean ± std."""
    return markdown_table(
        ["variant", "lr", "seeds", "diverged", "loss", "train acc", "test acc"],
        [[r["variant"], f"{r['lr']:g}", r["seeds"], r["diverged"], fmt_mean_std(r["loss"], r["loss_std"], 4),
          fmt_mean_std(r["train_acc"], r["train_acc_std"]), fmt_mean_std(r["test_acc"], r["test_acc_std"])] for r in summary])
