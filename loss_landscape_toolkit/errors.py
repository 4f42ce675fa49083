"""Error types shared by the whole toolkit.

Everything a user can get wrong (a range, a model name, a checkpoint, a file, missing data)
raises a subclass of :class:`UsageError` with a message that says what was wrong, what was
expected and how to fix it. The command-line programs print that message as one line and exit
with code 2 (``cli.args.reports_usage_errors``); any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import signal

EXIT_USAGE = 2
EXIT_INCOMPLETE = 3


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


class Incomplete(Exception):
    """A run that did its part but leaves the result incomplete (a merge while shards are still
    missing or unfinished). CLIs print the message as one line and exit with code 3."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM (e.g. a SLURM time limit) or SIGINT (Ctrl-C) during a grid, after the finished
    points were saved. CLIs print one line and exit with code 128 + the signal number."""

    def __init__(self, signum: int, detail: str = ""):
        super().__init__(signum, detail)
        self.signum, self.detail = signum, detail

    @property
    def code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        return f"stopped by {name}" + (f": {self.detail}" if self.detail else "")


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
