"""_files.py: atomic replacement, creation that never replaces, unique temporary names, the lock."""
from __future__ import annotations

import os

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
