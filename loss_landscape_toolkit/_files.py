"""Writing files safely: atomic replacement, creation that never replaces, and the writer lock.

Every file the toolkit writes goes through here. A file is written under a temporary name that is
unique to the process and the call, in the target's folder, then renamed over the target (or
linked to it, when it must not exist yet), so a process killed at any moment leaves the old or the
new complete file, never half of one, and two processes never share a temporary file.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import time
import uuid
from typing import Iterator

from .errors import FileFormatError


def temporary_name(path: str) -> str:
    """A name beside ``path`` for writing it: hidden, unique to this process and call. The file
    is created by its writer, so it gets the usual permissions."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def fsync(path: str) -> None:
    """Flush ``path``'s data to the disk (so a rename after it publishes complete contents)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: str, *, sync: bool = True) -> Iterator[str]:
    """Yield a temporary path to write; on success it is renamed over ``path``.

    On an exception the temporary file is removed and ``path`` is untouched. Temporaries of
    ``path`` left by writers that were killed are removed first.
    """
    remove_stale_temporaries(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        if sync:
            fsync(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def creating(path: str) -> Iterator[str]:
    """Yield a temporary path to write; on success it becomes ``path``, which must not exist.

    Raises:
        FileExistsError: ``path`` exists (perhaps created a moment ago by a concurrent job); it is
            left as it was.
    """
    remove_stale_temporaries(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        fsync(tmp)
        os.link(tmp, path)  # fails if path exists: no clobbering, even in a race
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` atomically."""
    with replacing(path, sync=False) as tmp, open(tmp, "w") as fh:
        fh.write(text)


def lock_name(path: str) -> str:
    """The lock file of ``path`` (hidden, beside it: a crash may leave it behind)."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.lock")


@contextlib.contextmanager
def writer_lock(path: str) -> Iterator[None]:
    """Hold an exclusive lock meaning "a process is writing results into ``path``".

    A second run writing the same file gets a clear error instead of silently losing results.
    The lock is released by the OS even on kill -9. Only the holder removes the lock file, and a
    lock taken on a file that its holder removed meanwhile is taken again on the new one, so a
    refused run never opens the way for a second writer. On file systems without flock the run
    proceeds unlocked.

    Raises:
        FileFormatError: another process holds the lock.
    """
    lock_path = lock_name(path)
    while True:
        with reporting_write_errors(path, "its lock file could not be created beside it"):
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FileFormatError(
                f"another process is writing {path} (lock {lock_path} is held); wait for it "
                f"to finish, or choose another --surf_file") from None
        except OSError:
            break  # no flock on this file system
        if _same_file(fd, lock_path):
            break
        os.close(fd)  # the holder before us removed that file: lock the current one
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        os.close(fd)


def remove_stale_temporaries(path: str) -> list[str]:
    """Remove the temporary files of ``path`` left by killed writers (see :func:`remove_stale`)."""
    folder, name = os.path.split(path)
    return remove_stale(folder, re.compile(rf"^\.{re.escape(name)}\.(\d+)-[0-9a-f]{{8}}\.tmp$"))


def remove_stale(folder: str, pattern: re.Pattern, min_age_secs: float = 3600.0) -> list[str]:
    """Remove the entries of ``folder`` (files or folders) whose names match ``pattern``, whose
    first group is the process id of their writer, when that process no longer runs on this host
    or the entry is older than ``min_age_secs`` (a writer on another host of a shared file
    system). Never this process's own. Returns the names removed."""
    removed = []
    for entry in os.scandir(folder or "."):
        match = pattern.match(entry.name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if _process_runs(int(match.group(1))) and time.time() - entry.stat().st_mtime < min_age_secs:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(entry.name)
    return removed


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def reporting_write_errors(path: str, hint: str = "") -> Iterator[None]:
    """Turn an OSError raised while writing ``path`` into a one-line FileFormatError.

    The message names ``path`` (and the folder above it that failed, when the OS named one)
    and the OS's reason, e.g. "No space left on device", then ``hint`` if given. Wrap only the
    writing: an OSError of anything else inside would be reported as this file's.

    Raises:
        FileFormatError: an OSError was raised inside the block.
    """
    try:
        yield
    except OSError as exc:
        where = exc.filename if isinstance(exc.filename, str) else ""
        at = f" (at {where})" if where and path.startswith(where.rstrip(os.sep) + os.sep) else ""
        why = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
        raise FileFormatError(f"cannot write {path}{at}: {why}" + (f"; {hint}" if hint else "")) from None
