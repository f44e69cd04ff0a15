"""``gluon-bn exercise NAME``: one of the chapter's exercises (or precise BN) over several seeds.

Config in; every variant of the exercise trained for every seed (:mod:`gluon_bn.experiments`);
a table, a conclusion drawn from the run's numbers, a plot, and ``exercise-NAME.json``/``.md``/``.png``
out. The record is rewritten after every run, so an interrupted exercise keeps what it did, and
``--resume`` continues it.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import matplotlib.pyplot as plt

from ..errors import UsageError
from ..experiments.catalogue import EXERCISES
from ..experiments.runner import ExerciseConfig, exercise_markdown, exercise_settings, run_exercise
from ..reliability.files import atomic_write_text
from ..reliability.record import load_record, save_record
from ..reports.plots import plot_exercise
from ..runs.arguments import config_from, count_option, run_arguments
from ..runs.prepare import prepare
from ..runtime.devices import describe

__all__ = ["ExerciseConfig", "add_arguments", "config", "run"]


def _listing() -> str:
    return "\n".join(f"{name:15s} {exercise.question}" for name, exercise in EXERCISES.items())


class _ListExercises(argparse.Action):
    """--list: print the exercises and their questions, and exit (as --help does)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(_listing())
        parser.exit()


HELP = "the chapter's exercises (and precise BN) as measured experiments"
DESCRIPTION = (
    "Run one of the chapter's exercises over several seeds; print a table and a conclusion "
    "drawn from this run's numbers; write exercise-NAME.json, .md and .png into --out. "
    "--list shows the exercises."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``gluon-bn exercise`` options."""
    defaults = ExerciseConfig()
    parser.add_argument(
        "name", nargs="?", choices=list(EXERCISES), metavar="NAME", help="one of: " + ", ".join(EXERCISES)
    )
    parser.add_argument("--list", nargs=0, action=_ListExercises, help="list the exercises and their questions")
    run_arguments(parser, defaults)
    count_option(parser, "seeds", defaults, "seeds per variant")
    parser.add_argument("--resume", action="store_true", help="keep the finished runs in --out, continue the rest")
    count_option(parser, "precise-batches", defaults, "precise-bn: training batches used to re-estimate the statistics")


def config(args: argparse.Namespace) -> ExerciseConfig:
    """The options as a config; an exercise must be named."""
    if args.name is None:
        raise UsageError(f"name an exercise:\n{_listing()}")
    return config_from(ExerciseConfig, args)


def run(config: ExerciseConfig, log: Callable[[str], None] = print) -> dict:
    """Run one exercise: every variant for every seed, then its table, conclusion and plot.

    With ``resume`` the finished runs in the record are kept and an unfinished one continues
    from its last checkpoint.
    """
    config = exercise_settings(config)
    ctx, out, extra, _ = prepare(config, log)
    stem = out / f"exercise-{config.name}"
    record_path, markdown_path, plot_path = (stem.with_suffix(s) for s in (".json", ".md", ".png"))
    done, earlier = {}, 0.0  # the runs a resumed record holds, and the seconds they took
    if config.resume and record_path.exists():
        record = load_record(record_path)
        done = {(r["variant"], r["seed"]): r for r in record["results"]["runs"]}
        earlier = record["wall_time"]
    started = time.perf_counter() - earlier

    def save(results: dict, complete: bool) -> None:
        save_record(
            record_path,
            "exercise",
            config.to_dict(),
            results,
            **extra,
            complete=complete,
            wall_time=time.perf_counter() - started,
        )

    result = run_exercise(
        config,
        ctx,
        log,
        checkpoints=out / "checkpoints" / stem.name,
        done=done,
        after_each=lambda runs: save({"runs": runs}, complete=False),
    )
    exercise = EXERCISES[config.name]
    title = f"exercise {config.name}: {config.epochs} epochs, {config.seeds} seeds, {describe(ctx)}"
    if exercise.plot is not None:
        fig = exercise.plot(result["summary"], result["runs"], plot_path, title=title)
    else:
        fig = plot_exercise(result["summary"], result["runs"], plot_path, x_axis=exercise.x_axis, title=title)
    plt.close(fig)
    text = exercise_markdown(config, ctx, result, plot_path.name)
    atomic_write_text(markdown_path, text + "\n")
    save({key: result[key] for key in ("runs", "summary", "conclusion")}, complete=True)
    details = result["details"]
    log("\n" + result["table"] + ("\n\n" + details if details else "") + "\n\nConclusion: " + result["conclusion"])
    log(f"\nwrote {record_path}, {markdown_path} and {plot_path}")
    return {**result, "record": record_path, "markdown": text, "plot": plot_path, "status": 0}
