"""Atomic file writes: a reader sees the old file or the new one, never half of one."""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

from . import faults
from .errors import DiskFull

#: Less free space than this after a failed write counts as a full filesystem.
NEARLY_FULL = 64 * 1024

__all__ = ["NEARLY_FULL", "atomic_write_bytes", "disk_full", "free_bytes", "atomic_write_json", "atomic_write_text", "check_writable_dir"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    On a full filesystem raise ``DiskFull`` naming ``path``; the old file stays as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise disk_full(path, exc) or exc
    try:
        faults.reached("open", file=path.name)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are meant to be shared
        faults.reached("write", file=path.name)
        os.replace(tmp, path)
    except BaseException as exc:
        os.unlink(tmp)
        full = disk_full(path, exc)
        if full:
            raise full from None
        raise
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer that was killed
        stale.unlink(missing_ok=True)
    return path


def disk_full(path: str | os.PathLike, exc: BaseException) -> DiskFull | None:
    """``DiskFull`` naming ``path`` when ``exc`` is a write that failed on a full filesystem, else None.

    Python's writes say ENOSPC (or EDQUOT); MXNet's ``nd.save`` says only "FileStream.Write incomplete",
    so for it the filesystem is asked whether space is left (call this before freeing what it wrote).
    """
    if isinstance(exc, OSError):
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    else:
        full = "Write incomplete" in str(exc) and free_bytes(path) < NEARLY_FULL
    return DiskFull(path) if full else None


def free_bytes(path: str | os.PathLike) -> int:
    """Bytes free to this user on the filesystem holding ``path`` (or its nearest existing folder)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``atomic_write_bytes`` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: object) -> Path:
    """``atomic_write_text`` of ``obj`` as indented JSON."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and prove a file can be written there; raise OSError if not."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".write-test-", dir=path)
    os.close(fd)
    os.unlink(tmp)
    return path
