"""The one record: a JSON document of what ran, where, and what it measured (its schema: ``schema``)."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from ..errors import UsageError
from ..runtime.devices import Contexts, as_list, describe
from .files import atomic_write_json
from .schema import FORMAT, READABLE, validate

__all__ = ["FORMAT", "cpu_model", "environment", "load_record", "save_record"]

_PACKAGES = ("gluon-bn", "mxnet", "numpy", "d2l", "matplotlib")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's model name as the OS reports it (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(ctx: Contexts) -> dict:
    """Python, platform, CPU, package versions and the MXNet context(s) of a run."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "context": describe(ctx),
        "devices": len(as_list(ctx)),
        "packages": {name: _version(name) for name in _PACKAGES},
    }


def save_record(
    path: str | os.PathLike, command: str, config: dict, results: dict, *, complete: bool, wall_time: float, **extra
) -> Path:
    """Write one record atomically, after checking it against the schema.

    Raises ``ValueError`` naming the first place the record breaks the schema; returns the path written.

    Args:
        path: the JSON file to write.
        command: the command that ran (``reproduce``, ``compare``, ``exercise`` or ``bench``).
        config: the command's settings, as its config dataclass names them.
        results: what the command measured; the schema checks it per command.
        complete: False while a run is under way, or after it stopped.
        wall_time: the run's seconds so far.
        **extra: further top-level fields: ``environment`` and ``data`` (required), and those the schema
            allows a command (``failures``, ``targets``, ``diverged`` and others).
    """
    record = {
        "format": FORMAT,
        "command": command,
        "config": config,
        **extra,
        "complete": complete,
        "wall_time": wall_time,
        "results": results,
    }
    validate(record)
    return atomic_write_json(path, record)


def load_record(path: str | os.PathLike) -> dict:
    """Read a record back: this version's (checked against the schema) or a ``READABLE`` older one."""
    record = json.loads(Path(path).read_text())
    found = record.get("format") if isinstance(record, dict) else None
    if found in READABLE:
        return record
    if found != FORMAT:
        raise UsageError(
            f"{path} is not a record this gluon-bn reads (format {found!r}; it reads {FORMAT} and "
            f"{', '.join(READABLE)}): move it away, or choose another --out"
        )
    try:
        validate(record)
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}; move it away, or choose another --out") from None
    return record
