"""Importing the user's own code: a model factory or a dataset function named by a spec.

A spec is ``path/to/file.py:name`` (a Python file, imported as a fresh module, with its folder on
``sys.path`` while it is imported and while the named object runs, so it can import its sibling
modules) or ``pkg.module:name`` (a module importable from ``sys.path``). Every failure becomes one
line naming the spec, what went wrong and how to fix it, raised as the caller's error type.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import sys
from typing import Any, Iterator

from .errors import UsageError, one_line

SYNTAX = "'path/to/file.py:name' or 'pkg.module:name'"


def is_spec(text: str) -> bool:
    """Whether a ``--model``/``--dataset`` value names user code rather than a built-in name."""
    return ":" in text


@contextlib.contextmanager
def on_sys_path(folder: str | None) -> Iterator[None]:
    """``folder`` first on ``sys.path`` for the duration (nothing for None)."""
    if folder is None or folder in sys.path:
        yield
        return
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # the user's code removed it itself
            sys.path.remove(folder)


def import_object(spec: str, *, kind: str, error: type[UsageError]) -> tuple[Any, str | None]:
    """The callable named by ``spec``, and the folder to keep on ``sys.path`` while it runs.

    Args:
        spec: ``path/to/file.py:name`` or ``pkg.module:name``.
        kind: what the object is, for messages (``"model"``, ``"custom dataset"``).
        error: the exception type to raise.

    Raises:
        error: a malformed spec, a missing file or module, an import that fails, or a name that
            is missing or not callable.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise error(f"{kind} spec must be a non-empty string, got {spec!r}; give {SYNTAX}")
    # rpartition: a Windows drive letter ("C:\\nets\\a.py:f") keeps its colon in the path
    location, _, name = spec.rpartition(":")
    if not location or not name.isidentifier():
        raise error(f"malformed {kind} spec {spec!r}: expected {SYNTAX}, both parts non-empty")
    if location.endswith(".py") or "/" in location or os.sep in location:
        module, folder = _import_file(location, spec, kind, error)
    elif all(part.isidentifier() for part in location.split(".")):
        module, folder = _import_module(location, spec, kind, error), None
    else:
        raise error(f"{kind} spec {spec!r} names neither a .py file nor a dotted module; expected {SYNTAX}")
    if not hasattr(module, name):
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        shown = ", ".join(public[:10]) + (", ..." if len(public) > 10 else "")
        raise error(f"{location} has no {name!r} (spec {spec!r}); expected the name of a function "
                    f"there (callables found: {shown or 'none'})")
    obj = getattr(module, name)
    if not callable(obj):
        raise error(f"{name!r} in {location} is a {type(obj).__name__}, not callable (spec {spec!r}); "
                    f"expected a function or class")
    return obj, folder


def _import_file(location: str, spec: str, kind: str, error: type[UsageError]) -> tuple[Any, str]:
    path = os.path.abspath(os.path.expanduser(location))
    if not os.path.exists(path):
        raise error(f"{kind} file not found: {path} (from spec {spec!r}); check the path")
    if not os.path.isfile(path):
        raise error(f"{kind} file {path} (from spec {spec!r}) is not a regular file; point the spec at a .py file")
    stem = os.path.splitext(os.path.basename(path))[0]
    module_name = f"_user_{stem}_{hashlib.sha1(path.encode()).hexdigest()[:12]}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise error(f"cannot import {path} as a Python module (from spec {spec!r}); expected a .py file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # so that dataclasses, pickling and the like find it
    folder = os.path.dirname(path)
    try:
        with on_sys_path(folder):
            module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise error(f"importing {kind} file {path} failed with {one_line(exc)}; fix the error in that "
                    f"file (try running it with python)") from None
    return module, folder


def _import_module(location: str, spec: str, kind: str, error: type[UsageError]) -> Any:
    try:
        return importlib.import_module(location)
    except ModuleNotFoundError as exc:
        if exc.name and location.startswith(exc.name):  # the module itself (or its package) is missing
            raise error(f"cannot import module {location!r} for {kind} {spec!r} ({one_line(exc)}); "
                        f"expected 'pkg.module:name' importable from sys.path (set PYTHONPATH) or "
                        f"'path/to/file.py:name'") from None
        raise error(f"importing module {location!r} for {kind} {spec!r} failed with {one_line(exc)}; "
                    f"fix the error in that module") from None
    except Exception as exc:
        raise error(f"importing module {location!r} for {kind} {spec!r} failed with {one_line(exc)}; "
                    f"fix the error in that module") from None
