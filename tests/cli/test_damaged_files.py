"""Files damaged inside (HDF5 that still opens) and writes the OS refuses: every program says
which file and why in one line, exits 2, and leaves the files that were there as they were."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import BASE, assert_main_usage_error
from surface_files import write_surface

from loss_landscape_toolkit import h5io
from loss_landscape_toolkit.cli import h52vtp, plot_1d, plot_2d, plot_surface

X5 = np.linspace(-1, 1, 5)


def _bowl(x, y=0.0):
    return 0.2 + 2 * x**2 + y**2


def damage(path: Path, key: str) -> None:
    """Overwrite the start of the object header of dataset ``key``: the file still opens, its
    other objects still read, but reading ``key`` fails inside the HDF5 library."""
    with h5py.File(path, "r") as f:
        address = h5py.h5o.get_info(f[key].id).addr
    data = bytearray(path.read_bytes())
    data[address:address + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("main, argv, ndim", [
    (plot_1d.main, ["--surf_file", "s.h5"], 1),
    (plot_2d.main, ["--surf_file", "s.h5"], 2),
    (h52vtp.main, ["--surf_file", "s.h5"], 2),
])
def test_plotting_a_damaged_surface_file_is_one_line(tmp_path, capsys, monkeypatch, main, argv, ndim):
    monkeypatch.chdir(tmp_path)
    path = Path(write_surface(tmp_path / "s.h5", X5, None if ndim == 1 else X5, _bowl))
    damage(path, "xcoordinates")
    before = path.read_bytes()
    assert_main_usage_error(capsys, main, argv, "cannot read surface file s.h5", "damaged")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]  # no figure, no mesh, no temporary


@pytest.fixture
def computed(tmp_path, checkpoint, monkeypatch) -> list[str]:
    """A finished 1D surface of the tiny model: its plot_surface.py arguments (run in tmp_path)."""
    monkeypatch.chdir(tmp_path)
    argv = [*BASE, "--model_file", checkpoint.name, "--x=-1:1:3", "--surf_file", "s.h5"]
    assert plot_surface.main(argv) == 0
    return argv


def _direction_file(folder: Path) -> Path:
    return next(p for p in folder.glob("*.h5") if p.name.startswith("model_10.t7_weights"))


def test_resuming_a_damaged_surface_file_is_one_line(tmp_path, capsys, computed):
    damage(tmp_path / "s.h5", "xcoordinates")
    before = (tmp_path / "s.h5").read_bytes()
    capsys.readouterr()
    assert_main_usage_error(capsys, plot_surface.main, computed, "cannot read surface file s.h5")
    assert (tmp_path / "s.h5").read_bytes() == before


@pytest.mark.parametrize("given", [False, True])
def test_a_damaged_direction_file_is_one_line(tmp_path, capsys, computed, given):
    path = _direction_file(tmp_path)
    with h5py.File(path, "r") as f:
        first = next(k for k in f["xdirection"]) if isinstance(f.get("xdirection"), h5py.Group) else None
    damage(path, f"xdirection/{first}" if first else "xdirection")
    capsys.readouterr()
    argv = [a if a != "s.h5" else "other.h5" for a in computed] + (["--dir_file", path.name] if given else [])
    assert_main_usage_error(capsys, plot_surface.main, argv, f"cannot read direction file {path.name}")
    assert not (tmp_path / "other.h5").exists()


@pytest.mark.parametrize("surf_file, reason", [
    ("a_file/s.h5", "cannot write the surface file a_file/s.h5"),
    ("s" * 300 + ".h5", "File name too long"),
])
def test_a_surface_file_the_os_refuses_is_one_line(tmp_path, capsys, checkpoint, monkeypatch, surf_file, reason):
    """Also as root, for whom a read-only folder is writable."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("not a folder")
    argv = [*BASE, "--model_file", checkpoint.name, "--x=-1:1:3", "--surf_file", surf_file]
    err = assert_main_usage_error(capsys, plot_surface.main, argv, reason)
    assert "cannot write" in err or "does not exist" in err, err
    assert (tmp_path / "a_file").read_text() == "not a folder"


def test_a_full_disk_mid_run_is_one_line_and_keeps_the_last_complete_file(tmp_path, capsys, computed,
                                                                          monkeypatch):
    """ENOSPC while a batch of results is written: the file holds the batches written before."""
    argv = [a if a != "--x=-1:1:3" else "--x=-1:1:5" for a in computed]
    argv = [a if a != "s.h5" else "t.h5" for a in argv] + ["--flush_secs", "0"]
    real_copy, calls = shutil.copyfile, []

    def copy_then_fill_the_disk(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) >= 3:  # the first two updates succeed
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dst)
        return real_copy(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", copy_then_fill_the_disk)
    capsys.readouterr()
    assert_main_usage_error(capsys, plot_surface.main, argv, "cannot write t.h5", "No space left on device")
    monkeypatch.setattr(shutil, "copyfile", real_copy)
    surface = h5io.read_surface_file(str(tmp_path / "t.h5"))
    assert surface.done_mask(h5io.TRAIN).sum() == 1  # what the second update wrote
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
