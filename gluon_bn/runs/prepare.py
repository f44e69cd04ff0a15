"""Everything a run checks before any training: its settings, the context, ``--out``, the data, the threads."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

from ..chapter.fashion_mnist import FashionMNIST, read_fashion_mnist
from ..errors import UsageError, unwritable_out
from ..reliability.files import check_writable_dir
from ..reliability.record import environment
from ..runtime import threads
from ..runtime.devices import Contexts, as_list, check_threads, resolve_context
from .settings import RunConfig

__all__ = ["Prepared", "prepare"]


class Prepared(NamedTuple):
    """What ``prepare`` found: the context (a list when several), the output folder, what every record
    says about the run, and the data, read once for the whole run."""

    ctx: Contexts
    out: Path
    extra: dict
    data: FashionMNIST


def prepare(config: RunConfig, log: Callable[[str], None] = print) -> Prepared:
    """Validate ``config`` and check the context, ``--out``, the data and the threads; one line per problem."""
    config.validate()
    ctx = resolve_context(config.ctx)
    out = Path(config.out)
    try:
        check_writable_dir(out)
    except OSError as exc:
        raise unwritable_out(out, exc) from None
    data = read_fashion_mnist(config.data_dir)
    log(f"Fashion-MNIST ({data.release} release) from {data.directory}")
    thread_setup = threads.setup()
    if config.threads is not None and config.threads != thread_setup["operator_threads"]:
        raise UsageError(
            f"threads {config.threads}: MXNet's CPU operators run with {thread_setup['operator_threads']}, "
            f"fixed when MXNet loaded; set {threads.ENV}={config.threads} before starting Python "
            "(the gluon-bn command's --threads does that for you)"
        )
    try:
        check_threads(as_list(ctx), thread_setup["operator_threads"])
    except ValueError as exc:
        raise UsageError(f"--ctx {config.ctx}: {exc}") from None
    extra = {
        "environment": {**environment(ctx), "threads": thread_setup},
        "data": {"directory": str(data.directory), "release": data.release},
    }
    return Prepared(ctx, out, extra, data)
