"""Error types shared by the whole toolkit.

Everything a user can get wrong (a range, a model name, a checkpoint, a file, missing data)
raises a subclass of :class:`UsageError` with a message that says what was wrong, what was
expected and how to fix it. The command-line scripts print that message as one line and exit
with code 2 (see :func:`reports_usage_errors`); any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import functools
import sys
from typing import Callable, Sequence

MainFn = Callable[[Sequence[str] | None], int]

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


def reports_usage_errors(prog: str) -> Callable[[MainFn], MainFn]:
    """Decorate a CLI ``main(argv) -> int`` so a :class:`UsageError` becomes one line and exit 2.

    Any other exception propagates with its traceback: it is a bug, not bad input.
    """

    def decorate(main: MainFn) -> MainFn:
        @functools.wraps(main)
        def wrapper(argv: Sequence[str] | None = None) -> int:
            try:
                return main(argv)
            except SilentExit as exc:
                return exc.code
            except UsageError as exc:
                print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
                return EXIT_USAGE

        return wrapper

    return decorate


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors become :class:`UsageError` (one line, exit 2, printed once)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")
