"""Errors meant for the user: each message names the problem and the fix."""

__all__ = ["GluonBNError", "DataError", "UsageError"]


class GluonBNError(Exception):
    """A failure the user can fix; the CLI prints it as one line, no traceback."""

    exit_code = 1


class DataError(GluonBNError):
    """Fashion-MNIST is missing, damaged, or from an unknown release."""


class UsageError(GluonBNError):
    """A command-line value that cannot work, caught before any training starts."""

    exit_code = 2
