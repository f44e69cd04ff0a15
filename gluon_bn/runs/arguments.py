"""The command-line options every training command shares, with that command's config as their defaults."""

from __future__ import annotations

import argparse

from ..errors import require_positive
from ..runtime.devices import CONTEXTS
from .settings import THREADS_MAX, RunConfig, Settings

__all__ = ["config_from", "count_option", "positive", "run_arguments"]


def positive(kind: type, most: int | None = None):
    """An argparse type accepting only positive, finite values of ``kind`` (and at most ``most``: for
    --threads, checked here because the command restarts itself with them before any config is built)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        require_positive("", value, argparse.ArgumentTypeError, integer=kind is int)  # argparse names the option
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most}, got {value}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def count_option(parser: argparse.ArgumentParser, name: str, defaults: Settings, help: str | None = None) -> None:
    """``--NAME``: a positive count, its default the config's field of that name."""
    parser.add_argument(f"--{name}", type=positive(int), default=getattr(defaults, name.replace("-", "_")), help=help)


def run_arguments(parser: argparse.ArgumentParser, defaults: RunConfig) -> None:
    """The settings every command takes, with that command's defaults; --epochs and --no-hybridize
    where its config has them (bench times one epoch per set-up, compiled or not by set-up)."""
    epochs = "epochs" in defaults.field_names()
    if epochs:
        parser.add_argument("--epochs", type=positive(int), default=defaults.epochs)
    parser.add_argument("--lr", type=positive(float), default=defaults.lr, help="SGD learning rate")
    parser.add_argument("--batch-size", type=positive(int), default=defaults.batch_size)
    parser.add_argument(
        "--ctx",
        default=defaults.ctx,
        metavar="{" + ",".join(CONTEXTS) + "} or DEVICES",
        help="where to train; auto picks gpu(0) when MXNet sees a GPU; several devices, "
        "data parallel: cpu:0,cpu:1 or gpu:0,gpu:1",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="seeds weights and batch order; a CPU run with the same seed repeats",
    )
    parser.add_argument(
        "--data-dir", default=None, help="folder with the four Fashion-MNIST .gz files (default: search, then download)"
    )
    parser.add_argument("--out", default=defaults.out, help="folder for the record, report and plots")
    parser.add_argument(
        "--num-train",
        type=positive(int),
        default=None,
        help="train on the first N training examples only (quick runs)",
    )
    parser.add_argument(
        "--num-test", type=positive(int), default=None, help="test on the first N test examples only (quick runs)"
    )
    if epochs:
        parser.add_argument(
            "--no-hybridize",
            dest="hybridize",
            action="store_false",
            help="run every layer imperatively, as the chapter's code does (slower, same numbers)",
        )
    parser.add_argument(
        "--threads",
        type=positive(int, THREADS_MAX),
        default=None,
        help="MXNet's CPU operator threads (default: $OMP_NUM_THREADS, else one per logical CPU)",
    )
    quick = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in type(defaults).QUICK.items())
    parser.add_argument(
        "--quick", action="store_true", help=f"{quick}: seconds, for a first look (also GLUON_BN_QUICK=1)"
    )


def config_from(cls: type[Settings], args: argparse.Namespace, **extra) -> Settings:
    """The parsed arguments as a ``cls`` config: the fields it has, and ``extra``."""
    return cls(**{**{k: v for k, v in vars(args).items() if k in cls.field_names()}, **extra})
