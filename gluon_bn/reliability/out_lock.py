"""One run at a time per ``--out``: the OS's advisory lock (flock) on a file in the folder, which names its holder.

The kernel drops a flock when its holder dies, even by kill -9, so a killed run never blocks the next one; the
file it leaves only says who held it, and the next holder rewrites it. A holder removes the file when it is done.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import UsageError, unwritable_out
from .files import naming_full_disk

__all__ = ["HANDED_ON_ENV", "LOCK_NAME", "holding_out"]

#: The lock file inside ``--out``.
LOCK_NAME = ".gluon-bn.lock"
#: "PID FOLDER" while PID holds FOLDER: gluon-bn processes it starts (a launch's workers) write there under its lock.
HANDED_ON_ENV = "GLUON_BN_OUT_HELD"
#: Tries to take the lock when each holder removes its file just as this run opens it.
ATTEMPTS = 20
#: Seconds a refused run waits for a holder that has just taken the lock to write who it is.
DETAILS_WAIT = 1.0
FIX = "wait for it to finish, or choose another --out"


@contextlib.contextmanager
def holding_out(folder: str | os.PathLike, command: Sequence[str]) -> Iterator[Path]:
    """Hold ``folder`` while the block runs, so no other run writes there; UsageError naming the holder if held."""
    folder = Path(folder)
    if _handed_on(folder):
        yield folder
        return
    created = not os.path.lexists(folder)
    fd = _acquire(folder)
    try:
        _write_holder(fd, folder, command)
        with _handing_on(folder):
            yield folder
    finally:
        _release(fd, folder, created)


def _handed_on(folder: Path) -> bool:
    """True when another process holds ``folder`` and handed it on to this one (a launch to its workers)."""
    pid, _, held = os.environ.get(HANDED_ON_ENV, "").partition(" ")
    return held == str(folder.resolve()) and pid != str(os.getpid())


@contextlib.contextmanager
def _handing_on(folder: Path) -> Iterator[None]:
    """Name ``folder`` as held by this process in the environment its children inherit, while the block runs."""
    before = os.environ.get(HANDED_ON_ENV)
    os.environ[HANDED_ON_ENV] = f"{os.getpid()} {folder.resolve()}"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(HANDED_ON_ENV, None)
        else:
            os.environ[HANDED_ON_ENV] = before


def _acquire(folder: Path) -> int:
    """The lock file's descriptor with its flock taken; a holder's file removed as it was opened is opened again."""
    path = folder / LOCK_NAME
    for _ in range(ATTEMPTS):
        fd = _open(folder, path)
        if fd is None:
            continue
        if not _try_flock(fd, folder):
            holder = _read_holder(fd)
            os.close(fd)
            raise UsageError(_in_use(folder, holder))
        if _is_linked(fd, path):
            return fd
        os.close(fd)
    raise UsageError(f"--out {folder}: its lock file {LOCK_NAME} kept changing under this run; try again")


def _open(folder: Path, path: Path) -> int | None:
    """The lock file opened (both created if need be); None when the folder vanished meanwhile."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            return None  # removed by a holder that had made it, just as that holder finished
    except OSError as exc:
        raise unwritable_out(folder, exc) from None


def _try_flock(fd: int, folder: Path) -> bool:
    """Take the exclusive flock without waiting; False when another open file holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        os.close(fd)
        raise UsageError(
            f"--out {folder}: cannot lock {LOCK_NAME} there ({exc.strerror}); choose a folder on a local disk"
        ) from None
    return True


def _is_linked(fd: int, path: Path) -> bool:
    """True when ``path`` is still the file ``fd`` has open (its holder has not removed it)."""
    try:
        seen, held = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (seen.st_dev, seen.st_ino) == (held.st_dev, held.st_ino)


def _write_holder(fd: int, folder: Path, command: Sequence[str]) -> None:
    """Write this run's pid, host, start time and command line into the lock file, for a refused run to name."""
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": list(command),
    }
    with naming_full_disk(folder / LOCK_NAME):
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)


def _read_holder(fd: int) -> dict | None:
    """The holder's details from the lock file, waiting briefly for one that has not written them yet."""
    deadline = time.monotonic() + DETAILS_WAIT
    while True:
        with contextlib.suppress(ValueError):
            holder = json.loads(os.pread(fd, 1 << 16, 0))
            if isinstance(holder, dict):
                return holder
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def _in_use(folder: Path, holder: dict | None) -> str:
    """The refusal as one line: the folder, the run holding it, and the fix."""
    return f"--out {folder} is in use by another gluon-bn run ({_describe(holder)}); {FIX}"


def _describe(holder: dict | None) -> str:
    """The holder as a person would look it up: pid (and host if not this one), local start time, command line."""
    try:
        started = datetime.fromisoformat(holder["started"]).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        where = "" if holder["host"] == socket.gethostname() else f" on {holder['host']}"
        command = " ".join(shlex.join(holder["command"]).splitlines())
        return f"pid {int(holder['pid'])}{where}, started {started}: {command}"
    except (KeyError, TypeError, ValueError):
        return "it has not said which"


def _release(fd: int, folder: Path, created: bool) -> None:
    """Remove the lock file (and the folder, if this run made it and left it empty), then drop the flock."""
    path = folder / LOCK_NAME
    if _is_linked(fd, path):
        path.unlink()
    if created:
        with contextlib.suppress(OSError):
            folder.rmdir()
    os.close(fd)
