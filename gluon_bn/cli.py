"""The ``gluon-bn`` command line: parses the arguments into a command's config and runs that command."""

from __future__ import annotations

import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")  # the CLI only writes PNG files

from . import __version__  # noqa: E402
from .chapter.published import CHAPTER  # noqa: E402
from .commands import COMMANDS  # noqa: E402
from .commands.bench import SECTIONS, BenchConfig  # noqa: E402
from .commands.compare import CompareConfig  # noqa: E402
from .commands.exercise import ExerciseConfig  # noqa: E402
from .commands.launch import LaunchConfig  # noqa: E402
from .commands.reproduce import ReproduceConfig  # noqa: E402
from .experiments.exercises import EXERCISES  # noqa: E402
from .norms import NORMS  # noqa: E402
from .parallel.devices import CONTEXTS  # noqa: E402
from .parallel.distributed import KVSTORES  # noqa: E402
from .reliability.errors import GluonBNError, require_positive  # noqa: E402
from .reliability.out_lock import holding_out  # noqa: E402
from .runs.settings import THREADS_MAX  # noqa: E402
from .runtime import threads  # noqa: E402

__all__ = ["main"]


def _model_choices() -> dict[str, tuple[str, ...]]:
    """reproduce --model: every registered norm, or both of the chapter's (read when the parser is built)."""
    return {**{name: (name,) for name in NORMS}, "both": tuple(CHAPTER)}


def _positive(kind, most: int | None = None):
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


def _run_arguments(parser: argparse.ArgumentParser, defaults) -> None:
    """The settings every command takes, with that command's defaults; --epochs and --no-hybridize
    where its config has them (bench times one epoch per set-up, compiled or not by set-up)."""
    epochs = "epochs" in defaults.field_names()
    if epochs:
        parser.add_argument("--epochs", type=_positive(int), default=defaults.epochs)
    parser.add_argument("--lr", type=_positive(float), default=defaults.lr, help="SGD learning rate")
    parser.add_argument("--batch-size", type=_positive(int), default=defaults.batch_size)
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
        type=_positive(int),
        default=None,
        help="train on the first N training examples only (quick runs)",
    )
    parser.add_argument(
        "--num-test", type=_positive(int), default=None, help="test on the first N test examples only (quick runs)"
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
        type=_positive(int, THREADS_MAX),
        default=None,
        help="MXNet's CPU operator threads (default: $OMP_NUM_THREADS, else one per logical CPU)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{_quick_text(type(defaults))}: seconds, for a first look (also GLUON_BN_QUICK=1)",
    )


def _quick_text(cls) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in cls.QUICK.items())


def build_parser() -> argparse.ArgumentParser:
    """The ``gluon-bn`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="gluon-bn", description="Batch normalization from Dive into Deep Learning, in MXNet Gluon."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rep = sub.add_parser(
        "reproduce",
        help="train the chapter's BN LeNets on Fashion-MNIST and compare with the book",
        description="Train LeNet with the from-scratch BatchNorm and with nn.BatchNorm using the "
        "chapter's settings; print the chapter's log lines, the first BN layer's gamma "
        "and beta, and a table next to the chapter's published numbers; write a JSON "
        "record and a PNG of the training curves into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    rep.add_argument(
        "--model",
        choices=_model_choices(),
        default="both",
        help="which LeNet: from-scratch BN, nn.BatchNorm, no BN, FastBatchNorm, synchronized BN, or scratch and gluon",
    )
    _run_arguments(rep, ReproduceConfig())
    rep.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoints in --out (written after every epoch and on Ctrl-C)",
    )
    rep.add_argument(
        "--kvstore",
        choices=KVSTORES,
        default=None,
        help="train as one worker of a job over MXNet's parameter server (see gluon-bn launch)",
    )
    cmp_ = sub.add_parser(
        "compare",
        help="the from-scratch BatchNorm side by side with nn.BatchNorm, every difference explained",
        description="Hold both BN layers to a float64 reference, show each known difference at the "
        "defaults and closed once its cause is aligned, tabulate which statistics each "
        "autograd scope uses, train both LeNets from the same start and measure their "
        "drift, and time both layers. Prints the tables; writes compare.md, compare.json "
        "and PNG plots into --out. Exit status 1 when an agreement that should hold does not.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _run_arguments(cmp_, CompareConfig())
    cmp_.add_argument(
        "--steps",
        type=_positive(int),
        default=CompareConfig().steps,
        help="training steps before the moving statistics are checked",
    )
    cmp_.add_argument(
        "--speed-repeats",
        type=_positive(int),
        default=CompareConfig().speed_repeats,
        help="timed repetitions per layer and shape",
    )
    ex = sub.add_parser(
        "exercise",
        help="the chapter's exercises (and precise BN) as measured experiments",
        description="Run one of the chapter's exercises over several seeds; print a table and a conclusion "
        "drawn from this run's numbers; write exercise-NAME.json, .md and .png into --out. "
        "--list shows the exercises.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ex.add_argument("name", nargs="?", choices=list(EXERCISES), metavar="NAME", help="one of: " + ", ".join(EXERCISES))
    ex.add_argument("--list", action="store_true", help="list the exercises and their questions")
    _run_arguments(ex, ExerciseConfig())
    ex.add_argument("--seeds", type=_positive(int), default=ExerciseConfig().seeds, help="seeds per variant")
    ex.add_argument("--resume", action="store_true", help="keep the finished runs in --out, continue the rest")
    ex.add_argument(
        "--precise-batches",
        type=_positive(int),
        default=ExerciseConfig().precise_batches,
        help="precise-bn: training batches used to re-estimate the statistics",
    )
    _bench_parser(sub)
    _launch_parser(sub)
    return parser


def _launch_parser(sub) -> None:
    """``gluon-bn launch``: a job over MXNet's parameter server; the workers' command follows ``--``."""
    defaults = LaunchConfig()
    la = sub.add_parser(
        "launch",
        help="run a training command data parallel over MXNet's parameter server (kvstore dist_sync)",
        usage="gluon-bn launch [-h] --workers N [--servers S] [--hosts FILE] [--port P] [--interface NAME] "
        "[--keepalive SECONDS] -- COMMAND ARGS...",
        description="Start ps-lite's scheduler, the servers and N workers, each running COMMAND (with "
        "--kvstore dist_sync); prefix their output with role and rank; stop the whole job when "
        "any process fails or on Ctrl-C, and leave no process behind. Without --hosts everything "
        "runs on this machine and listens on loopback only.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    la.add_argument("--workers", type=int, required=True, help="worker processes (each trains on its share)")
    la.add_argument("--servers", type=int, default=defaults.servers, help="parameter-server processes")
    la.add_argument(
        "--hosts",
        default=None,
        help="file with one host per line: workers go round-robin, "
        "the scheduler and servers on the first (started over --ssh)",
    )
    la.add_argument("--port", type=_positive(int), default=None, help="the scheduler's port (default: a free one)")
    la.add_argument(
        "--ssh",
        default=defaults.ssh,
        help="how to run a command on a host (OpenSSH's ssh gets BatchMode and keep-alives added)",
    )
    la.add_argument(
        "--interface",
        default=None,
        metavar="NAME",
        help="with --hosts: every node binds to NAME's address on its host (default: the address the hosts file gives)",
    )
    la.add_argument(
        "--keepalive",
        type=float,
        default=defaults.keepalive,
        metavar="SECONDS",
        help="with --hosts: ssh keep-alive interval; a host unheard for 3 of them ends the job",
    )
    la.add_argument("job", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS", help="the workers' gluon-bn command")


def _bench_parser(sub) -> None:
    """``gluon-bn bench``: its own settings (it trains one epoch per model, so no --epochs)."""
    defaults = BenchConfig()
    b = sub.add_parser(
        "bench",
        help="time every BN layer and LeNet here against nn.BatchNorm, d2l's pipeline and PyTorch",
        description="Time the from-scratch, fast and fused BN layers at LeNet's shapes; one epoch of each "
        "LeNet as the chapter's code runs it, through d2l's pipeline, and as gluon-bn runs it, "
        "beside PyTorch's LeNet when PyTorch is installed; resident memory over many training "
        "steps; a profile of a training step. Every ratio is measured in the same run. Writes "
        "bench.json and bench.md into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    b.add_argument("--models", nargs="+", choices=list(NORMS), default=list(defaults.models), help="LeNets to time")
    b.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(defaults.sections))
    b.add_argument(
        "--repeats", type=_positive(int), default=defaults.repeats, help="timed rounds per layer and shape (at least 3)"
    )
    b.add_argument(
        "--rounds",
        type=_positive(int),
        default=defaults.rounds,
        help="interleaved rounds of each epoch set-up, each in a fresh process (at least 3)",
    )
    b.add_argument(
        "--memory-steps",
        type=_positive(int),
        default=defaults.memory_steps,
        help="training steps per model in the memory section",
    )
    b.add_argument("--profile-steps", type=_positive(int), default=defaults.profile_steps)
    _run_arguments(b, defaults)


#: Each command's config class, and what the parsed arguments give it beyond its fields' names.
CONFIGS = {
    "reproduce": (ReproduceConfig, lambda args: {"models": _model_choices()[args.model]}),
    "compare": (CompareConfig, lambda args: {}),
    "exercise": (ExerciseConfig, lambda args: {}),
    "bench": (BenchConfig, lambda args: {"models": tuple(args.models), "sections": tuple(args.sections)}),
    "launch": (LaunchConfig, lambda args: {"command": args.job[1:] if args.job[:1] == ["--"] else args.job}),
}


def _config(args: argparse.Namespace):
    """The parsed arguments as their command's config."""
    cls, extra = CONFIGS[args.command]
    return cls(**{**{k: v for k, v in vars(args).items() if k in cls.field_names()}, **extra(args)})


def _out_folder(parser: argparse.ArgumentParser, config) -> str:
    """The folder the run holds: its --out; a launch's workers' --out (their command checked before any node starts)."""
    if isinstance(config, LaunchConfig):
        return _config(parser.parse_args(config.validate().command)).resolved().validate().out
    return config.out


def _listing() -> str:
    return "\n".join(f"{name:15s} {exercise.question}" for name, exercise in EXERCISES.items())


def _restart_with_threads(count: int) -> None:
    """Run this command again with ``OMP_NUM_THREADS=count``: MXNet fixes its threads when it loads."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(
        sys.executable, [sys.executable, "-m", "gluon_bn", *sys.argv[1:]], {**os.environ, threads.ENV: str(count)}
    )


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and a non-zero status."""
    parser = build_parser()
    for arg in sys.argv[1:] if argv is None else argv:
        option, equals, value = arg.partition("=")
        if option.startswith("--") and equals and value == "--":  # argparse would hand the option []
            parser.error(f"argument {option}: '--' is not a value; give one, or leave {option} out")
    args = parser.parse_args(argv)
    if argv is None and getattr(args, "threads", None) and os.environ.get(threads.ENV) != str(args.threads):
        _restart_with_threads(args.threads)
    if args.command == "exercise" and (args.list or args.name is None):
        if args.list:
            print(_listing())
            return 0
        print(f"gluon-bn: error: name an exercise:\n{_listing()}", file=sys.stderr)
        return 2
    config = _config(args)
    try:
        with holding_out(_out_folder(parser, config), ["gluon-bn", *(sys.argv[1:] if argv is None else argv)]):
            result = COMMANDS[args.command].run(config)
    except GluonBNError as exc:
        print(f"gluon-bn: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gluon-bn: interrupted", file=sys.stderr)
        return 130
    if args.command == "launch":
        return result
    if args.command == "compare" and result["failures"]:
        print(
            f"gluon-bn: compare: {len(result['failures'])} agreement(s) did not hold: " + "; ".join(result["failures"]),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
