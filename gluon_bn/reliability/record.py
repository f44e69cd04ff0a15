"""The one record format: a JSON document of what ran, where, and what it measured."""
from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from ..parallel.devices import Contexts, as_list, describe
from .files import atomic_write_json

__all__ = ["FORMAT", "cpu_model", "environment", "load_record", "save_record"]

FORMAT = "gluon-bn-record/1"
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


def save_record(path: str | os.PathLike, command: str, config: dict, results: dict, **extra) -> Path:
    """Write one record atomically; ``results`` maps model name to its measurements."""
    record = {"format": FORMAT, "command": command, "config": config, **extra, "results": results}
    return atomic_write_json(path, record)


def load_record(path: str | os.PathLike) -> dict:
    """Read a record back, refusing files of another format."""
    record = json.loads(Path(path).read_text())
    if record.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} record (format {record.get('format')!r})")
    return record
