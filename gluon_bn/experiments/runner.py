"""Running one of the chapter's exercises: every variant for every seed, its summary, table and report."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, ClassVar, Mapping

import mxnet as mx
from mxnet import gluon

from ..chapter.training import Epoch, history_rows
from ..errors import Diverged, UsageError
from ..models import seeded_lenet
from ..runs.loop import Callback
from ..runs.settings import SEED_MAX, TrainConfig
from ..runs.supervised import train_model
from ..runtime.devices import Contexts, as_list, describe, resolve_context
from .catalogue import EXERCISES
from .exercises import Exercise, Variant
from .summary import summarize, summary_table

__all__ = ["ExerciseConfig", "exercise_markdown", "exercise_settings", "run_exercise", "variant_config"]


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

    def exercise(self) -> Exercise:
        """The exercise this config names; a UsageError listing them when it names none."""
        if self.name not in EXERCISES:
            raise UsageError(f"unknown exercise {self.name!r}: choose from {', '.join(EXERCISES)}")
        return EXERCISES[self.name]

    def validate(self) -> "ExerciseConfig":
        self.exercise()
        super().validate()
        if self.seed + self.seeds - 1 > SEED_MAX:
            raise UsageError(
                f"seeds {self.seed}..{self.seed + self.seeds - 1} go past the largest seed, "
                f"{SEED_MAX}; give a smaller --seed or fewer --seeds"
            )
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


def _train_variant(
    exercise: Exercise, variant: Variant, config: ExerciseConfig, ctx: Contexts, checkpoints, log: Callable[[str], None]
) -> dict:
    """Train one variant for one seed (``config.seed``); its record entry, diverged or not."""
    log(f"\n== {variant.name}, seed {config.seed} ==")
    net = seeded_lenet(variant.norm, ctx, config.seed, **variant.options)
    extras: dict = {}
    callbacks = [_PerEpoch(exercise, config, ctx, extras)] if exercise.on_epoch else []
    if exercise.recorders is not None:
        callbacks += exercise.recorders(net, config, ctx, extras)
    entry = {
        "variant": variant.name,
        "group": variant.group,
        "seed": config.seed,
        "lr": config.lr,
        "devices": len(as_list(ctx)),
        "batch_size": config.batch_size,
    }
    try:
        trained = train_model(
            variant.norm,
            config,
            ctx,
            log,
            net=net,
            callbacks=callbacks,
            extras=extras,
            checkpoints=checkpoints,
            resume=config.resume,
        )
        if exercise.measure is not None:
            extras.update(exercise.measure(net, config, ctx))
        entry.update(status="trained", history=history_rows(trained.history))
    except Diverged as exc:
        log(f"diverged: {exc}")
        entry.update(
            status="diverged",
            history=history_rows(exc.history),
            diverged={"epoch": exc.epoch, "batch": exc.batch, "loss": str(exc.loss)},
        )
    return {**entry, "extras": extras}


def run_exercise(
    config: ExerciseConfig,
    ctx: Contexts,
    log: Callable[[str], None] = print,
    checkpoints: Path | None = None,
    done: Mapping[tuple[str, int], dict] | None = None,
    after_each: Callable[[list[dict]], None] | None = None,
) -> dict:
    """Train every variant of ``config.name`` for every seed; its runs, summary, table and conclusion.

    Args:
        config: the exercise and its settings (``exercise_settings`` fills in the exercise's own defaults).
        ctx: where the variants train, unless a variant names its devices.
        log: where the per-epoch lines go.
        checkpoints: a folder for each run's checkpoints (``config.resume`` continues from them).
        done: runs already finished, by (variant, seed), kept as they are.
        after_each: called with the runs so far after each run (the command rewrites its record).
    """
    exercise = EXERCISES[config.name]
    runs: list[dict] = []
    log(f"exercise {exercise.name}: {exercise.question}")
    for variant in exercise.variants(config):
        for seed in range(config.seed, config.seed + config.seeds):
            settings = variant_config(config, variant, seed, as_list(ctx)[0].device_type)
            where = None if checkpoints is None else checkpoints / f"{_slug(variant.name)}-seed{seed}"
            runs.append(
                (done or {}).get((variant.name, seed))
                or _train_variant(
                    exercise,
                    variant,
                    settings,
                    ctx if variant.devices is None else resolve_context(settings.ctx),
                    where,
                    log,
                )
            )
            if after_each is not None:
                after_each(runs)
    summary = summarize(runs)
    return {
        "runs": runs,
        "summary": summary,
        "conclusion": exercise.conclude(summary, runs),
        "table": summary_table(summary),
        "details": exercise.details(runs) if exercise.details else "",
    }


def exercise_settings(config: ExerciseConfig) -> ExerciseConfig:
    """``config`` with the exercise's own epochs and training subset where the user set none, imperative
    where the exercise needs it."""
    config = config.resolved()
    exercise = config.exercise()
    return replace(
        config,
        epochs=config.epochs or exercise.epochs,
        num_train=config.num_train or exercise.num_train,
        hybridize=config.hybridize and exercise.hybridize,
    )


def exercise_markdown(config: ExerciseConfig, ctx: Contexts, result: Mapping, plot_name: str | None = None) -> str:
    """The exercise's report: its question, the chapter's claim, settings, table, details, conclusion and plot.

    Args:
        config: the exercise and the settings it ran with (``exercise_settings``'s).
        ctx: the devices the runs trained on, named unless a row names its own.
        result: what ``run_exercise`` returned; its table, details and conclusion go in the report.
        plot_name: the plot's file name, linked at the end; None leaves the plot out.
    """
    exercise = EXERCISES[config.name]
    sizes = sorted({run.get("batch_size", config.batch_size) for run in result["runs"]}) or [config.batch_size]
    batch = f"batch {sizes[0]}" if len(sizes) == 1 else "the batch size the row names"
    return "\n\n".join(
        part
        for part in (
            f"# Exercise `{exercise.name}`",
            f"*{exercise.question}*",
            f'The chapter: "{exercise.claim}"' if exercise.claim else "",
            f"{config.epochs} epochs per run, seeds {config.seed}..{config.seed + config.seeds - 1}, lr {config.lr:g} "
            f"unless the row says otherwise, {batch}, on {describe(ctx)} unless the row names devices"
            + (f", first {config.num_train:,} training images" if config.num_train else "")
            + (f", first {config.num_test:,} test images" if config.num_test else "")
            + ("" if config.hybridize else ", every layer run imperatively (not compiled)")
            + ". Numbers are the last epoch's, mean ± std over seeds.",
            result["table"],
            result["details"],
            f"**Conclusion (from this run's numbers).** {result['conclusion']}",
            f"![plot]({plot_name})" if plot_name else "",
        )
        if part
    )


def variant_config(config: ExerciseConfig, variant: Variant, seed: int, kind: str = "cpu") -> ExerciseConfig:
    """The run settings for one variant and seed (its devices are the first of the run's ``kind``).

    Args:
        config: the exercise's settings; the variant's lr and batch size replace its own where the variant sets them.
        variant: the variant to run.
        seed: the run's seed.
        kind: the device type (``'cpu'``, ``'gpu'``) of a variant that names its number of devices.
    """
    changes = {
        "seed": seed,
        "lr": variant.lr if variant.lr is not None else config.lr,
        "batch_size": variant.batch_size or config.batch_size,
    }
    if variant.devices is not None:
        changes["ctx"] = ",".join(f"{kind}:{i}" for i in range(variant.devices))
    return replace(config, **changes)
