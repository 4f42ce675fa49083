"""3D meshes of a 2D surface: ParaView ``.vtp`` (the reference's h52vtp layout) and Wavefront ``.obj``.

The surface becomes a height field: one point ``(x, y, z)`` per grid point, in the file's flat
order (``k = iy * nx + ix``), and one quad per grid cell, ``(k, k + 1, k + nx + 1, k + nx)``
(counter-clockwise seen from +z), so an ``nx`` x ``ny`` grid gives ``(nx - 1) * (ny - 1)`` quads:
any grid, not only square ones. The ``z`` values go through the reference's steps: optional
resampling on an ``interp`` x ``interp`` grid, clipping at ``zmax``, then ``z = ln(z + 0.1)``
with ``log``.

Points that are not computed or not finite (NaN; inf when not clipped) are dropped with every
quad that touches them, so a mesh never holds NaN coordinates.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ._files import write_text
from .errors import UsageError

LOG_SHIFT = 0.1  # z = ln(z + 0.1), as the reference
# Peak memory of one exported point: its height arrays, its share of the quads (int64 (m, 4)),
# the coordinate grids and the ASCII text of the file before it is written (measured: about
# 300 bytes for an ``--interp N --zmax --log`` export, the same per point for any N).
BYTES_PER_POINT = 350


def export_bytes(npoints: int) -> int:
    """Bytes of memory that exporting a mesh of ``npoints`` grid points needs at its peak."""
    return npoints * BYTES_PER_POINT


@dataclass(frozen=True)
class Mesh:
    """A height-field mesh: ``points`` (n, 3) float64, ``quads`` (m, 4) int64 indices into it."""

    points: np.ndarray
    quads: np.ndarray

    @property
    def z(self) -> np.ndarray:
        return self.points[:, 2]


def height_field(x: np.ndarray, y: np.ndarray, z: np.ndarray, *, zmax: float | None = None,
                 log: bool = False, interp: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grid and heights to mesh, after the reference's resampling, clipping and log.

    Args:
        x, y: coordinates, ``(nx,)`` and ``(ny,)``.
        z: ``(ny, nx)`` values with NaN where not computed.
        zmax: clip heights above this (also before resampling, so a diverged +inf region
            becomes a plateau instead of breaking the spline); None: no clipping.
        log: ``z = ln(z + 0.1)``; heights with ``z + 0.1 <= 0`` are dropped.
        interp: resample on ``interp`` x ``interp`` points spanning each axis with a cubic
            spline through the data (scipy's ``RectBivariateSpline``, which replaces the removed
            ``interp2d``); None: no resampling.

    Returns:
        ``(x, y, z)`` of the grid to mesh, ``z`` shaped ``(len(y), len(x))``, NaN = dropped.

    Raises:
        UsageError: ``interp`` < 2, or resampling a grid with missing or infinite points.
    """
    z = np.array(z, dtype=np.float64)  # (ny, nx)
    if zmax is not None:
        z = np.where(np.isnan(z), z, np.minimum(z, zmax))
    if interp is not None:
        x, y, z = _resample(x, y, z, interp)
        if zmax is not None:
            z = np.minimum(z, zmax)  # cubic overshoot above the clip
    if log:
        shifted = z + LOG_SHIFT
        safe = np.isfinite(shifted) & (shifted > 0)
        z = np.where(safe, np.log(np.where(safe, shifted, 1.0)), np.nan)
    z = np.where(np.isfinite(z), z, np.nan)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), z


def _resample(x: np.ndarray, y: np.ndarray, z: np.ndarray, num: int):
    from scipy.interpolate import RectBivariateSpline

    if num < 2:
        raise UsageError(f"--interp must be at least 2 points per axis (the reference suggests 1000), got {num}")
    bad = int((~np.isfinite(z)).sum())
    if bad:
        raise UsageError(
            f"--interp needs every grid point computed and finite, but {bad} of {z.size} are NaN, "
            f"inf or not computed; add --zmax to clip inf, or leave out --interp")
    if len(x) < 2 or len(y) < 2 or (np.diff(x) <= 0).any() or (np.diff(y) <= 0).any():
        raise UsageError("--interp needs increasing coordinates with at least 2 points on each axis")
    # degree 3 as interp2d(kind='cubic'), lower only when an axis has too few points for it
    spline = RectBivariateSpline(y, x, z, kx=min(3, len(y) - 1), ky=min(3, len(x) - 1), s=0)
    xs = np.linspace(x.min(), x.max(), num)
    ys = np.linspace(y.min(), y.max(), num)
    return xs, ys, spline(ys, xs)  # (num, num), rows = y


def build_mesh(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> Mesh:
    """Points and quads of a height field (NaN heights dropped with their quads).

    Args:
        x, y: ``(nx,)``, ``(ny,)`` coordinates.
        z: ``(ny, nx)`` heights.
    """
    ny, nx = z.shape
    xx, yy = np.meshgrid(x, y)  # (ny, nx)
    points = np.stack([xx.ravel(), yy.ravel(), z.ravel()], axis=1)  # (ny*nx, 3), k = iy*nx + ix
    k = (np.arange(ny - 1)[:, None] * nx + np.arange(nx - 1)[None, :]).ravel()
    quads = np.stack([k, k + 1, k + nx + 1, k + nx], axis=1).astype(np.int64)  # ((ny-1)*(nx-1), 4)
    keep = np.isfinite(points[:, 2])
    if keep.all():
        return Mesh(points, quads)
    quads = quads[keep[quads].all(axis=1)]
    new_index = np.cumsum(keep) - 1  # old point index -> index among kept points
    return Mesh(points[keep], new_index[quads])


# --------------------------------------------------------------------------- writers
def write_vtp(path: str, mesh: Mesh) -> None:
    """ASCII VTK PolyData in the reference's layout: point data ``zvalue``, cell data
    ``averaged zvalue`` (mean of each quad's corners), quads as ``Polys``. Written atomically."""
    z = mesh.z
    cell_z = z[mesh.quads].mean(axis=1) if len(mesh.quads) else np.zeros(0)
    n, m = len(mesh.points), len(mesh.quads)
    out = io.StringIO()
    out.write('<?xml version="1.0"?>\n'
              '<VTKFile type="PolyData" version="1.0" byte_order="LittleEndian" header_type="UInt64">\n'
              '  <PolyData>\n'
              f'    <Piece NumberOfPoints="{n}" NumberOfVerts="0" NumberOfLines="0" '
              f'NumberOfStrips="0" NumberOfPolys="{m}">\n')
    out.write('      <PointData>\n')
    _data_array(out, "Float32", "zvalue", z, 1)
    out.write('      </PointData>\n      <CellData>\n')
    _data_array(out, "Float32", "averaged zvalue", cell_z, 1)
    out.write('      </CellData>\n      <Points>\n')
    _data_array(out, "Float32", "Points", mesh.points, 3)
    out.write('      </Points>\n')
    for section in ("Verts", "Lines", "Strips"):
        out.write(f'      <{section}>\n')
        _data_array(out, "Int64", "connectivity", np.zeros(0, dtype=np.int64), 1)
        _data_array(out, "Int64", "offsets", np.zeros(0, dtype=np.int64), 1)
        out.write(f'      </{section}>\n')
    out.write('      <Polys>\n')
    _data_array(out, "Int64", "connectivity", mesh.quads, 1)
    _data_array(out, "Int64", "offsets", 4 * np.arange(1, m + 1, dtype=np.int64), 1)
    out.write('      </Polys>\n    </Piece>\n  </PolyData>\n</VTKFile>\n')
    write_text(path, out.getvalue())


def _data_array(out: io.StringIO, vtk_type: str, name: str, values: np.ndarray, components: int) -> None:
    flat = np.asarray(values).reshape(-1)
    comp = f' NumberOfComponents="{components}"' if components > 1 else ""
    rng = (f' RangeMin="{flat.min():.9g}" RangeMax="{flat.max():.9g}"'
           if vtk_type == "Float32" and components == 1 and flat.size else "")
    out.write(f'        <DataArray type="{vtk_type}" Name="{name}"{comp} format="ascii"{rng}>\n')
    per_line = 6  # as the reference: six values per line (two points of Points)
    fmt = "%.9g" if vtk_type == "Float32" else "%d"
    full = flat.size - flat.size % per_line
    if full:
        np.savetxt(out, flat[:full].reshape(-1, per_line), fmt=fmt, delimiter=" ")
    if flat.size > full:
        np.savetxt(out, flat[full:].reshape(1, -1), fmt=fmt, delimiter=" ")
    out.write('        </DataArray>\n')


def write_obj(path: str, mesh: Mesh) -> None:
    """Wavefront ``.obj``: ``v x y z`` per point and ``f a b c d`` (1-based) per quad. Atomic."""
    out = io.StringIO()
    out.write("# loss surface exported by h52vtp.py: x, y = direction coordinates, z = value\n")
    np.savetxt(out, mesh.points, fmt="v %.9g %.9g %.9g")
    if len(mesh.quads):
        np.savetxt(out, mesh.quads + 1, fmt="f %d %d %d %d")
    write_text(path, out.getvalue())
