"""The ``gluon-bn`` command line: dispatches to a command (``gluon_bn.commands``), which does the rest.

Here only what holds for every command: MXNet's threads set before it loads, the command's ``--out``
held while it writes, and a user's error said in one line with its exit status.
"""

from __future__ import annotations

import os
import sys

import matplotlib

matplotlib.use("Agg")  # the CLI only writes PNG files

from .commands import build_parser, out_folder, parse  # noqa: E402
from .errors import GluonBNError  # noqa: E402
from .reliability.out_lock import holding_out  # noqa: E402
from .runtime import threads  # noqa: E402

__all__ = ["build_parser", "main"]


def _restart_with_threads(count: int) -> None:
    """Run this command again with ``OMP_NUM_THREADS=count``: MXNet fixes its threads when it loads."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(
        sys.executable, [sys.executable, "-m", "gluon_bn", *sys.argv[1:]], {**os.environ, threads.ENV: str(count)}
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` names (default: the process's arguments); return its exit status."""
    from_shell = argv is None
    argv = sys.argv[1:] if from_shell else argv
    command, args = parse(argv)
    if from_shell and getattr(args, "threads", None) and os.environ.get(threads.ENV) != str(args.threads):
        _restart_with_threads(args.threads)
    try:
        config = command.config(args)
        with holding_out(out_folder(command, config), ["gluon-bn", *argv]):
            return command.run(config)["status"]
    except GluonBNError as exc:
        print(f"gluon-bn: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gluon-bn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
