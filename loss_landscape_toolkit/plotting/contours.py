"""2D figures of one array of a surface file: contour lines, filled contours, heat map, 3D surface.

Arrays are ``(ny, nx)`` with ``Z[iy, ix] = f(x[ix], y[iy])``, drawn with x horizontal and y
vertical; points not computed, NaN or inf are masked (skipped by contours, grey in heat maps); the
3D surface is clipped at ``vmax``.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .._naming import map_figure
from .._options import DPI
from ..h5io import SurfaceFile
from ._figures import axes_xy, check_dims, check_levels, check_output, figures, heat_map, masked, note, save


def plot_2d_contour(surface: SurfaceFile, *, surf_name: str = "train_loss", vmin: float = 0.1, vmax: float = 10,
                    vlevel: float = 0.5, log: bool = False, fmt: str = "pdf", dpi: int = DPI,
                    show: bool = False) -> list[str]:
    """The reference's four 2D figures of one array of a 2D surface file, next to it.

    ``_{surf_name}_2dcontour``: labelled contour lines at ``arange(vmin, vmax, vlevel)``;
    ``_2dcontourf``: filled contours at the same levels; ``_2dheat``: heat map with colour
    limits ``vmin``, ``vmax``; ``_3dsurface``: the surface clipped at ``vmax`` (log10 heights
    with ``log``). When no requested level lies inside the values (e.g. an accuracy with the
    loss defaults), automatic levels are used and a note says so.

    Args:
        surface: a 2D surface file (ours or the reference's, any grid shape).
        surf_name: any array of the file, or ``train_err``/``test_err`` (100 - accuracy).
        vmin, vmax, vlevel: contour levels and colour limits.
        log: log10 heights in the 3D surface.
        fmt, dpi, show: as :func:`plot_1d_loss_err`.

    Returns:
        The four paths written.

    Raises:
        UsageError: a 1D file, unknown ``surf_name`` (the message lists the available ones), no
            computed values, bad levels.
    """
    check_output(fmt, dpi)
    check_levels(vmin, vmax, vlevel)
    check_dims(surface, 2)
    z = masked(surface, surf_name)  # (ny, nx)
    x, y = surface.xcoordinates, surface.ycoordinates
    levels = contour_levels(z, vmin, vmax, vlevel, surf_name)
    paths = []
    with figures(show) as figs:
        fig = figs.new()
        ax = fig.add_subplot()
        contour_lines(ax, x, y, z, levels, cmap="summer", fontsize=8)
        axes_xy(ax)
        paths.append(save(fig, map_figure(surface.path, surf_name, "2dcontour"), fmt=fmt, dpi=dpi))

        fig = figs.new()
        ax = fig.add_subplot()
        filled = ax.contourf(x, y, z, levels=levels, cmap="summer", extend="both")
        fig.colorbar(filled, ax=ax)
        axes_xy(ax)
        paths.append(save(fig, map_figure(surface.path, surf_name, "2dcontourf"), fmt=fmt, dpi=dpi))

        fig = figs.new()
        heat_map(fig, x, y, z, vmin=vmin, vmax=vmax, label=surf_name)
        paths.append(save(fig, map_figure(surface.path, surf_name, "2dheat"), fmt=fmt, dpi=dpi))

        fig = figs.new()
        _surface_3d(fig, x, y, z, vmax=vmax, log=log, label=surf_name)
        paths.append(save(fig, map_figure(surface.path, surf_name, "3dsurface"), fmt=fmt, dpi=dpi))
    return paths


def contour_levels(z: np.ma.MaskedArray, vmin: float, vmax: float, vlevel: float, name: str) -> np.ndarray:
    levels = np.arange(vmin, vmax, vlevel)
    lo, hi = float(z.min()), float(z.max())
    if len(levels) >= 2 and ((levels > lo) & (levels < hi)).any():
        return levels
    auto = MaxNLocator(nbins=10).tick_values(lo, hi)
    if lo < hi:
        note(f"no contour level of arange({vmin:g}, {vmax:g}, {vlevel:g}) lies within the values of "
              f"{name} ({lo:.4g} .. {hi:.4g}); using automatic levels (set --vmin/--vmax/--vlevel)")
    return auto


def contour_lines(ax, x, y, z, levels, **style) -> None:
    fontsize = style.pop("fontsize")
    lo, hi = float(z.min()), float(z.max())
    inside = levels[(levels > lo) & (levels < hi)]
    if not len(inside):  # a constant surface has no contour line
        ax.text(0.5, 0.5, f"constant: {lo:.4g}", transform=ax.transAxes, ha="center")
        ax.set_xlim(x.min(), x.max())
        ax.set_ylim(y.min(), y.max())
        return
    lines = ax.contour(x, y, z, levels=levels, **style)
    ax.clabel(lines, inline=True, fontsize=fontsize)


def _surface_3d(fig: Figure, x, y, z, *, vmax: float, log: bool, label: str) -> None:
    # add_subplot attaches the 3D axes to the figure; the reference's Axes3D(fig) no longer
    # does on matplotlib >= 3.6, which is why its 3D figures came out blank
    ax = fig.add_subplot(projection="3d")
    heights = np.ma.minimum(z, vmax)
    if log:
        heights = np.ma.log10(np.ma.masked_less_equal(heights, 0))
        label = f"log10 {label}"
    xx, yy = np.meshgrid(x, y)  # (ny, nx)
    surf = ax.plot_surface(xx, yy, heights, cmap="coolwarm", linewidth=0, antialiased=False)
    fig.colorbar(surf, ax=ax, shrink=0.5, aspect=5, label=label)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
