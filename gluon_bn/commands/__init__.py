"""The ``gluon-bn`` commands, one module each, read top to bottom: options, config, run, record, exit status.

Every module has ``HELP`` and ``DESCRIPTION`` (and ``USAGE`` where argparse's would mislead),
``add_arguments(parser)`` (its options), ``config(args)`` (the options as its config: its own
dataclass, or the library's where a notebook needs the same), and ``run(config, log=print)``, which
writes the command's record and returns a dict with the record's path (``"record"``) and the exit
status (``"status"``). A run holds its ``--out`` while it writes; a module whose folder is another
(``launch``: its workers') says so in ``out_folder(config)``. What the commands share is the
library's (:mod:`gluon_bn.runs` above all). The CLI (``gluon_bn.cli``) only dispatches; notebooks
import the library, never a command.
"""

from __future__ import annotations

import argparse
from types import ModuleType

from .. import __version__
from . import bench, compare, exercise, launch, reproduce

__all__ = ["COMMANDS", "build_parser", "out_folder", "parse"]

#: Each command's module, by its name on the command line.
COMMANDS: dict[str, ModuleType] = {
    "reproduce": reproduce,
    "compare": compare,
    "exercise": exercise,
    "bench": bench,
    "launch": launch,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``gluon-bn`` argument parser: each command adds its own subcommand."""
    parser = argparse.ArgumentParser(
        prog="gluon-bn", description="Batch normalization from Dive into Deep Learning, in MXNet Gluon."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        command = sub.add_parser(
            name,
            help=module.HELP,
            usage=getattr(module, "USAGE", None),
            description=module.DESCRIPTION,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_arguments(command)
    return parser


def parse(argv: list[str]) -> tuple[ModuleType, argparse.Namespace]:
    """The command ``argv`` names, and its parsed options (argparse exits with status 2 on bad ones)."""
    parser = build_parser()
    for arg in argv:
        option, equals, value = arg.partition("=")
        if option.startswith("--") and equals and value == "--":  # argparse would hand the option []
            parser.error(f"argument {option}: '--' is not a value; give one, or leave {option} out")
    args = parser.parse_args(argv)
    return COMMANDS[args.command], args


def out_folder(command: ModuleType, config) -> str:
    """The folder a run of ``command`` holds while it writes: its ``--out``, unless the command says otherwise."""
    return command.out_folder(config) if hasattr(command, "out_folder") else config.out
