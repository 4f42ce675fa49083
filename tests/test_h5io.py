"""Surface and direction files: layout, the grid convention, completion masks, atomic
updates, refusals, and files written by the reference code."""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from conftest import DATA

from loss_landscape_toolkit import h5io
from loss_landscape_toolkit.errors import FileFormatError
from loss_landscape_toolkit.h5io import EIG, TEST, TRAIN


def _new_surface(path, nx=3, ny=2):
    x, y = np.linspace(-1, 1, nx), (None if ny is None else np.linspace(0, 1, ny))
    h5io.create_surface_file(str(path), dir_file="d.h5", xcoordinates=x, ycoordinates=y,
                                attrs={"model": "m", "settings": {"a": 1}})
    return x, y


def test_non_square_grid_convention(tmp_path):
    """Values written by flat index k = iy * nx + ix read back as Z[iy, ix] = f(x[ix], y[iy])."""
    path = str(tmp_path / "s.h5")
    x, y = _new_surface(path, nx=3, ny=2)
    def f(a, b):
        return 10 * a + b
    index = np.arange(6)
    values = [f(x[k % 3], y[k // 3]) for k in index]
    h5io.update_surface_file(path, groups=[TRAIN], results={"train_loss": (index, values)})
    surface = h5io.read_surface_file(path)
    assert surface.arrays["train_loss"].shape == (2, 3)
    for iy in range(2):
        for ix in range(3):
            assert surface.arrays["train_loss"][iy, ix] == f(x[ix], y[iy])
    with h5py.File(path) as raw:  # the stored dataset itself is (len(y), len(x))
        assert raw["train_loss"].shape == (2, 3) and raw["train_done"].dtype == np.uint8


def test_masks_placeholders_and_true_zero(tmp_path):
    path = str(tmp_path / "s.h5")
    _new_surface(path, nx=4, ny=None)
    h5io.update_surface_file(path, groups=[TRAIN, EIG])
    s = h5io.read_surface_file(path)
    assert (s.arrays["train_loss"] == -1).all() and (s.arrays["min_eig"] == 1).all()
    assert not s.done_mask(TRAIN).any() and not s.done_mask(TEST).any()
    h5io.update_surface_file(path, groups=[TRAIN], results={
        "train_loss": ([0, 2], [0.0, np.nan]), "train_acc": ([0, 2], [100.0, 0.0])})
    s = h5io.read_surface_file(path)
    assert s.done_mask(TRAIN).tolist() == [True, False, True, False]  # a true 0 and a NaN are done
    assert s.arrays["train_loss"][0] == 0.0 and np.isnan(s.arrays["train_loss"][2])
    assert s.attrs["model"] == "m" and s.attrs["settings"] == {"a": 1}  # JSON text read back as what it encodes


def test_reference_surface_file_reads_and_gets_masks(tmp_path):
    """The reference's 5x5 file (no attributes, no masks) reads; completion is derived from
    its -1 placeholder, and adding our groups keeps its values."""
    path = str(tmp_path / "ref.h5")
    shutil.copy(DATA / "reference_resnet20_surface_5x5.h5", path)
    s = h5io.read_surface_file(path)
    assert s.shape == (5, 5) and s.attrs == {}
    assert s.done_mask(TRAIN).all() and (s.arrays["train_loss"] > 0).all()
    before = s.arrays["train_loss"].copy()
    with h5py.File(path, "r+") as f:  # pretend two points were never computed
        f["train_loss"][0, 1] = -1
        f["train_loss"][4, 4] = -1
    h5io.update_surface_file(path, groups=[TRAIN])
    s = h5io.read_surface_file(path)
    assert s.done_mask(TRAIN).sum() == 23 and not s.done_mask(TRAIN)[0, 1]
    np.testing.assert_array_equal(s.arrays["train_loss"][s.done_mask(TRAIN)], before[s.done_mask(TRAIN)])


def test_no_clobber_and_refusals(tmp_path):
    path = tmp_path / "s.h5"
    _new_surface(path)
    with pytest.raises(FileFormatError, match="already exists"):
        _new_surface(path)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(FileFormatError, match="cannot open"):
        h5io.read_surface_file(str(garbage))
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[:600])
    with pytest.raises(FileFormatError, match="truncated"):
        h5io.read_surface_file(str(truncated))
    with pytest.raises(FileFormatError, match="direction file"):
        h5io.read_surface_file(str(DATA / "reference_resnet20_directions.h5"))
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["something"] = [1, 2, 3]
    with pytest.raises(FileFormatError, match="not a surface file.*something"):
        h5io.read_surface_file(str(foreign))
    with pytest.raises(FileFormatError, match="not a direction file"):
        h5io.read_direction_file(str(foreign))
    with pytest.raises(FileFormatError, match="not found"):
        h5io.read_surface_file(str(tmp_path / "missing.h5"))


def test_update_is_atomic_on_failure(tmp_path):
    """A failing update leaves the original file untouched and no temporary file behind."""
    path = str(tmp_path / "s.h5")
    _new_surface(path, nx=3, ny=None)
    h5io.update_surface_file(path, groups=[TRAIN], results={"train_loss": ([1], [0.5])})
    before = (tmp_path / "s.h5").read_bytes()
    with pytest.raises(FileFormatError, match="cannot update surface file .*no_such_key.*it was left as it was"):
        h5io.update_surface_file(path, results={"no_such_key": ([0], [1.0])})
    assert (tmp_path / "s.h5").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


def test_projection_file_round_trip_and_refusals(tmp_path):
    path = str(tmp_path / "p.h5")
    h5io.write_projection_file(path, [0.5, 0.0], [-1.0, 0.0], attrs={"method": "cos"})
    proj = h5io.read_projection_file(path)
    assert proj.xcoord.tolist() == [0.5, 0.0] and proj.ycoord.tolist() == [-1.0, 0.0]
    assert proj.attrs["method"] == "cos"
    with pytest.raises(FileFormatError, match="already exists"):
        h5io.write_projection_file(path, [0.0], [0.0], attrs={})
    with pytest.raises(FileFormatError, match="not a projection file"):
        h5io.read_projection_file(str(DATA / "reference_resnet20_surface_5x5.h5"))
