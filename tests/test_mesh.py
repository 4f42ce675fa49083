"""h52vtp.py and mesh_export: .vtp and .obj files read back with VTK's own readers (an
independent implementation), on non-square grids, with --zmax, --log, --interp and NaN/inf."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_usage_error, run_script
from surface_files import write_pca_directions, write_surface
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkIOGeometry import vtkOBJReader
from vtkmodules.vtkIOXML import vtkXMLPolyDataReader

from loss_landscape_toolkit import mesh as mesh_export
from loss_landscape_toolkit._naming import mesh_name
from loss_landscape_toolkit.cli import h52vtp
from loss_landscape_toolkit.errors import UsageError

NX, NY = 7, 4
X = np.linspace(-1, 1, NX)
Y = np.linspace(-0.5, 1.0, NY)


def _loss(x, y):
    return 0.2 + 4 * x**2 + 3 * (y - 0.2) ** 2 + x * y  # from 0.2 up to about 7.6


def _read_vtp(path):
    reader = vtkXMLPolyDataReader()
    reader.SetFileName(str(path))
    reader.Update()
    return _arrays(reader.GetOutput(), point_data="zvalue", cell_data="averaged zvalue")


def _read_obj(path):
    reader = vtkOBJReader()
    reader.SetFileName(str(path))
    reader.Update()
    return _arrays(reader.GetOutput())


def _arrays(poly, point_data=None, cell_data=None):
    out = {"points": vtk_to_numpy(poly.GetPoints().GetData()).astype(np.float64),
           "polys": poly.GetNumberOfPolys(), "cells": poly.GetNumberOfCells(),
           "connectivity": vtk_to_numpy(poly.GetPolys().GetConnectivityArray()),
           "offsets": vtk_to_numpy(poly.GetPolys().GetOffsetsArray())}
    if point_data:
        out["zvalue"] = vtk_to_numpy(poly.GetPointData().GetArray(point_data)).astype(np.float64)
        out["averaged"] = vtk_to_numpy(poly.GetCellData().GetArray(cell_data)).astype(np.float64)
    return out


def _expected_points(x, y, z):
    xx, yy = np.meshgrid(x, y)  # (ny, nx): point k = iy * nx + ix
    return np.stack([xx.ravel(), yy.ravel(), z.ravel()], axis=1)


def _quads(nx, ny):
    return [(r * nx + c, r * nx + c + 1, (r + 1) * nx + c + 1, (r + 1) * nx + c)
            for r in range(ny - 1) for c in range(nx - 1)]


def test_cli_vtp_and_obj_non_square_zmax_log(tmp_path):
    surf = write_surface(tmp_path / "s.h5", X, Y, _loss)
    proc = run_script("h52vtp.py", "-f", surf, "--zmax", "5", "--log", "--obj", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    vtp, obj = f"{surf}_train_loss_zmax=5.0_log.vtp", f"{surf}_train_loss_zmax=5.0_log.obj"
    assert proc.stdout.splitlines()[:2] == [vtp, obj] and "28 points, 18 quads" in proc.stdout
    xx, yy = np.meshgrid(X, Y)
    z = np.log(np.minimum(_loss(xx, yy), 5) + 0.1)  # (ny, nx), the reference's order: clip, then log
    assert (_loss(xx, yy) > 5).any() and (_loss(xx, yy) < 5).any()  # the clip matters here
    expected = _expected_points(X, Y, z)
    quads = _quads(NX, NY)

    got = _read_vtp(vtp)
    assert got["points"].shape == (NX * NY, 3) and got["polys"] == got["cells"] == (NX - 1) * (NY - 1)
    np.testing.assert_allclose(got["points"], expected, rtol=1e-6, atol=1e-6)  # Float32 in the file
    np.testing.assert_allclose(got["zvalue"], z.ravel(), rtol=1e-6, atol=1e-6)
    assert got["connectivity"].reshape(-1, 4).tolist() == [list(q) for q in quads]
    assert got["offsets"].tolist() == list(range(0, 4 * len(quads) + 1, 4))
    np.testing.assert_allclose(got["averaged"], [z.ravel()[list(q)].mean() for q in quads], rtol=1e-6)

    got = _read_obj(obj)
    assert got["points"].shape == (NX * NY, 3) and got["polys"] == (NX - 1) * (NY - 1)
    np.testing.assert_allclose(got["points"], expected, rtol=1e-6, atol=1e-6)
    assert got["connectivity"].reshape(-1, 4).tolist() == [list(q) for q in quads]


def test_plain_export_keeps_values(tmp_path):
    x, y, z = mesh_export.height_field(X, Y, _loss(*np.meshgrid(X, Y)))
    path = tmp_path / "plain.vtp"
    mesh_export.write_vtp(str(path), mesh_export.build_mesh(x, y, z))
    got = _read_vtp(path)
    np.testing.assert_allclose(got["zvalue"], _loss(*np.meshgrid(X, Y)).ravel(), rtol=1e-6)
    assert mesh_name("s.h5", "train_loss", zmax=None, log=False) == "s.h5_train_loss.vtp"


def test_nan_inf_and_unfinished_points_are_left_out(tmp_path):
    z = _loss(*np.meshgrid(X, Y))
    z[1, 2] = np.nan  # diverged to NaN: its 4 quads go
    z[3, 6] = np.inf  # corner: clipped by zmax, kept
    z[0, 0] = np.nan  # corner: 1 quad goes
    x, y, h = mesh_export.height_field(X, Y, z, zmax=5.0)
    mesh = mesh_export.build_mesh(x, y, h)
    path = tmp_path / "holes.vtp"
    mesh_export.write_vtp(str(path), mesh)
    mesh_export.write_obj(str(tmp_path / "holes.obj"), mesh)
    for got in (_read_vtp(path), _read_obj(tmp_path / "holes.obj")):
        assert got["points"].shape == (NX * NY - 2, 3) and got["polys"] == 18 - 4 - 1
        assert np.isfinite(got["points"]).all() and got["points"][:, 2].max() == pytest.approx(5.0)
        corners = got["points"][got["connectivity"]]
        assert not np.isclose(corners[:, :2], [X[2], Y[1]]).all(axis=1).any()  # no quad uses the NaN point

    # without zmax the inf corner goes too
    x, y, h = mesh_export.height_field(X, Y, z)
    assert len(mesh_export.build_mesh(x, y, h).quads) == 18 - 4 - 1 - 1


def test_interp_reproduces_a_cubic_exactly(tmp_path):
    """A cubic spline through the data reproduces polynomials of degree <= 3 per axis, so the
    resampled heights equal the closed form (the reference's removed interp2d did the same)."""
    def f(x, y):
        return 1 + x**3 - 2 * x * y + y**2
    x, y, h = mesh_export.height_field(X, Y, f(*np.meshgrid(X, Y)), interp=9)
    assert h.shape == (9, 9) and x[0] == -1 and x[-1] == 1 and y[0] == -0.5 and y[-1] == 1
    np.testing.assert_allclose(h, f(*np.meshgrid(x, y)), atol=1e-10)
    mesh = mesh_export.build_mesh(x, y, h)
    mesh_export.write_vtp(str(tmp_path / "i.vtp"), mesh)
    got = _read_vtp(tmp_path / "i.vtp")
    assert got["points"].shape == (81, 3) and got["polys"] == 64


def test_interp_refuses_holes():
    z = _loss(*np.meshgrid(X, Y))
    z[1, 1] = np.nan
    with pytest.raises(UsageError, match="--interp needs every grid point"):
        mesh_export.height_field(X, Y, z, interp=20)
    z[1, 1] = np.inf  # clipped first: the spline sees a plateau
    _, _, h = mesh_export.height_field(X, Y, z, zmax=3, interp=20)
    assert np.isfinite(h).all() and h.max() <= 3


def test_log_drops_non_positive_heights():
    z = np.array([[-0.5, 0.0], [1.0, 2.0]])
    _, _, h = mesh_export.height_field(np.array([0.0, 1.0]), np.array([0.0, 1.0]), z, log=True)
    assert np.isnan(h[0, 0]) and h[0, 1] == pytest.approx(np.log(0.1)) and h[1, 1] == pytest.approx(np.log(2.1))


def test_cli_bad_inputs(tmp_path, capsys):
    directions = write_pca_directions(tmp_path / "dirs.h5")
    assert_usage_error(run_script("h52vtp.py", "-f", directions, cwd=tmp_path), "h52vtp.py: error:",
                       "is a direction file")
    one_d = write_surface(tmp_path / "one.h5", X, None, lambda x: x**2)
    two_d = write_surface(tmp_path / "two.h5", X, Y, _loss)
    holes = write_surface(tmp_path / "holes.h5", X, Y, _loss, done=np.eye(NY, NX, dtype=bool))
    for argv, fragment in ((["-f", one_d], "1D surface file"),
                           (["-f", two_d, "--surf_name", "val_loss"], "no 'val_loss'; available: train_acc, train_err"),
                           (["-f", str(tmp_path / "nope.h5")], "surface file not found"),
                           (["-f", holes], "no grid cell of train_loss has 4 computed finite corners"),
                           (["-f", two_d, "--interp", "1"], "--interp must be at least 2"),
                           ([], "no surface file")):
        assert h52vtp.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, (argv, err)
    assert not list(tmp_path.glob("*.vtp"))


def test_cli_refuses_an_interp_that_cannot_fit_before_reading(tmp_path):
    two_d = write_surface(tmp_path / "two.h5", X, Y, _loss)
    for surf in (two_d, str(tmp_path / "not_read.h5")):  # refused before the file is opened
        proc = run_script("h52vtp.py", "-f", surf, "--interp", "100000", cwd=tmp_path)
        assert_usage_error(proc, "h52vtp.py: error: --interp 100000 is 1e+10 mesh points",
                           "would need 3.5 TB, more than the", "use a smaller --interp (at most")
    assert not list(tmp_path.glob("*.vtp"))


def test_cli_interp_limit_is_the_machines_memory(tmp_path, capsys, monkeypatch):
    two_d = write_surface(tmp_path / "two.h5", X, Y, _loss)
    monkeypatch.setattr(h52vtp.cli_args, "physical_memory", lambda: 10**8)  # 100 MB: 534 x 534 points
    assert h52vtp.main(["-f", two_d, "--interp", "500"]) == 0
    assert h52vtp.main(["-f", two_d, "--interp", "600"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("would need 126 MB, more than the 100 MB of memory of this machine; use a smaller "
                        "--interp (at most 534 here; the reference suggests 1000)"), err


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_cli_refuses_a_zmax_that_is_not_a_height(tmp_path, capsys, value):
    two_d = write_surface(tmp_path / "two.h5", X, Y, _loss)
    assert h52vtp.main(["-f", two_d, f"--zmax={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"h52vtp.py: error: --zmax must be a finite height to clip at (or <= 0 for no clipping), got {value}"
    assert not list(tmp_path.glob("*.vtp"))
