"""_files.py: atomic replacement, creation that never replaces, unique temporary names, the lock."""
from __future__ import annotations

import os
import time

import pytest

from loss_landscape_toolkit import _files
from loss_landscape_toolkit.errors import FileFormatError


def test_replacing_publishes_only_a_finished_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), _files.replacing(str(path)) as tmp:
        with open(tmp, "w") as fh:
            fh.write("half")
        raise RuntimeError("killed while writing")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]
    _files.write_text(str(path), "new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["out.txt"]


def test_creating_never_replaces(tmp_path):
    path = tmp_path / "made.h5"
    with _files.creating(str(path)) as tmp, open(tmp, "w") as fh:
        fh.write("first")
    with pytest.raises(FileExistsError), _files.creating(str(path)) as tmp, open(tmp, "w") as fh:
        fh.write("second")
    assert path.read_text() == "first" and os.listdir(tmp_path) == ["made.h5"]


def test_temporary_names_are_hidden_and_unique_per_call(tmp_path):
    path = str(tmp_path / "s.h5")
    names = {_files.temporary_name(path) for _ in range(50)}
    assert len(names) == 50
    assert all(os.path.basename(n).startswith(".s.h5.") and str(os.getpid()) in n for n in names)


def test_writer_lock_is_exclusive(tmp_path):
    path = str(tmp_path / "s.h5")
    with _files.writer_lock(path), pytest.raises(FileFormatError, match="another process is writing"), \
            _files.writer_lock(path):
        pass
    with _files.writer_lock(path):  # released afterwards
        pass
    assert not (tmp_path / ".s.h5.lock").exists()


def test_a_refused_writer_leaves_the_holders_lock_in_place(tmp_path):
    """Start a writer, be refused once, try again: still refused (the refused run must not have
    removed the lock it never held)."""
    path = str(tmp_path / "s.h5")
    with _files.writer_lock(path):
        for _ in range(2):
            with pytest.raises(FileFormatError, match="another process is writing"), _files.writer_lock(path):
                pass
        assert (tmp_path / ".s.h5.lock").exists()


def _dead_pid() -> int:
    """The pid of a process that has ended."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_a_writer_removes_temporaries_of_killed_writers_only(tmp_path):
    target = tmp_path / "s.h5"
    target.write_bytes(b"data")
    dead = tmp_path / f".s.h5.{_dead_pid()}-0123abcd.tmp"
    alive = tmp_path / f".s.h5.{os.getppid()}-0123abcd.tmp"  # a running process (our parent)
    other = tmp_path / f".t.h5.{_dead_pid()}-0123abcd.tmp"  # another file's
    for p in (dead, alive, other):
        p.write_bytes(b"partial")
    with _files.replacing(str(target)) as tmp, open(tmp, "wb") as fh:
        fh.write(b"data")
    assert not dead.exists() and alive.exists() and other.exists()
    assert target.read_bytes() == b"data"
    old = time.time() - 2 * 3600  # a writer on another host, long gone
    os.utime(alive, (old, old))
    with pytest.raises(FileExistsError), _files.creating(str(target)) as tmp:  # creating cleans up too
        open(tmp, "wb").close()
    assert not alive.exists() and target.read_bytes() == b"data"
