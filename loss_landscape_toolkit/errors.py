"""Error types shared by the whole toolkit.

Everything a user can get wrong (a range, a model name, a checkpoint, a file, missing data)
raises a subclass of :class:`UsageError` with a message that says what was wrong, what was
expected and how to fix it. The command-line programs print that message as one line and exit
with code 2 (``cli.args.reports_usage_errors``); any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user. CLIs report it as one line and exit with code 2."""


class RangeError(UsageError, ValueError):
    """A malformed ``min:max:num`` coordinate range."""


class ModelError(UsageError):
    """Unknown model name, bad model spec, missing or mismatched checkpoint."""


class DataError(UsageError):
    """Unknown dataset, missing data files, or a dataset that cannot be used."""


class FileFormatError(UsageError):
    """An HDF5 file that is missing, unreadable, foreign, or made for another model or grid."""


class SilentExit(Exception):
    """Raised on MPI ranks that must stop because another rank already reported the error."""

    def __init__(self, code: int = EXIT_USAGE):
        super().__init__(code)
        self.code = code


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``TypeName: message`` of an exception, on one line and cut to ``limit`` characters (for
    error messages that quote what a user's code or a library raised)."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
