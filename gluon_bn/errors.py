"""Errors meant for the user: each message names the problem and the fix."""

import math

__all__ = [
    "DataError",
    "Diverged",
    "DiskFull",
    "GluonBNError",
    "Interrupted",
    "TrainingInterrupted",
    "UsageError",
    "require_positive",
    "unwritable_out",
]


#: The largest count a setting may have: MXNet passes shapes and counts to C as 32-bit integers.
INT_MAX = 2**31 - 1


class GluonBNError(Exception):
    """A failure the user can fix; the CLI prints it as one line, no traceback."""

    exit_code = 1


class DataError(GluonBNError):
    """Fashion-MNIST is missing, damaged, or from an unknown release."""


class DiskFull(GluonBNError):
    """A file could not be written because its filesystem is full; what was written before is intact."""

    def __init__(self, path):
        self.path = path
        super().__init__(
            f"{path}: no space left on device; free some space there or choose another --out "
            "(reproduce and exercise then continue with --resume)"
        )


class UsageError(GluonBNError):
    """A command-line value that cannot work, caught before any training starts."""

    exit_code = 2


def unwritable_out(folder, exc: OSError) -> UsageError:
    """The one refusal of an ``--out`` that cannot be written, wherever it is found out."""
    return UsageError(f"--out {folder}: cannot write there ({exc.strerror}); choose a writable folder")


class Diverged(GluonBNError):
    """The training loss became NaN or infinite; no update was applied from that batch."""

    def __init__(self, epoch: int, batch: int, loss: float, lr: float):
        self.epoch, self.batch, self.loss, self.lr = epoch, batch, loss, lr
        super().__init__(
            f"training diverged: loss {loss} at epoch {epoch}, batch {batch} with learning rate {lr:g}; "
            f"try a lower learning rate, e.g. --lr {lr / 2:g}"
        )


class Interrupted(GluonBNError):
    """The user stopped a run; what it had done is saved and can be resumed."""

    exit_code = 130


class TrainingInterrupted(KeyboardInterrupt):
    """``train_ch5`` stopped at a batch boundary on request, with the partial epoch's sums."""

    def __init__(self, epoch: int, metric: list[float]):
        super().__init__(f"interrupted during epoch {epoch + 1}")
        self.epoch, self.metric = epoch, metric


def require_positive(name: str, value, error: type[Exception] = ValueError, integer: bool = False) -> None:
    """Raise ``error`` naming ``name`` unless ``value`` is unset (None) or positive and finite (an integer if asked).

    A bool is not a number here.

    Args:
        name: what the message calls the value (an option's name); empty leaves it out.
        value: the value checked; None always passes.
        error: the exception class raised (``ValueError`` by default).
        integer: True also requires an ``int``, at most ``INT_MAX``.
    """
    if value is None:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or (integer and not isinstance(value, int)) or not 0 < value < (INT_MAX + 1 if integer else math.inf):
        wanted = f"a positive integer, at most {INT_MAX}" if integer else "positive and finite"
        raise error(f"{name + ' ' if name else ''}must be {wanted}, got {value!r}")
