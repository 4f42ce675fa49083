"""2D figures of one array of a surface file: contour lines, filled contours, heat map, 3D surface.

Arrays are ``(ny, nx)`` with ``Z[iy, ix] = f(x[ix], y[iy])``, drawn with x horizontal and y
vertical; points not computed, NaN or inf are masked (skipped by contours, grey in heat maps).
The levels and colours come from :mod:`._levels`: the reference's ``--vmin/--vmax/--vlevel``
when any is given, else from the data.
"""
from __future__ import annotations

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .._naming import map_figure
from .._options import DPI
from ..h5io import SurfaceFile
from ._figures import axes_xy, axis_label, beyond, check_dims, check_output, figures, heat_map, masked, note, save
from ._labels import place_labels
from ._levels import Levels, choose_levels, every_kth, level_texts, line_colours, reference_limits

FILLED_CMAP = "viridis"
SURFACE_CMAP = "coolwarm"
BAR_TICKS = 11  # at most this many numbered ticks on a colour bar


def plot_2d_contour(surface: SurfaceFile, *, surf_name: str = "train_loss", vmin: float | None = None,
                    vmax: float | None = None, vlevel: float | None = None, log: bool = False,
                    fmt: str = "pdf", dpi: int = DPI, show: bool = False) -> list[str]:
    """The reference's four 2D figures of one array of a 2D surface file, next to it.

    ``_{surf_name}_2dcontour``: labelled contour lines; ``_2dcontourf``: filled contours at the
    same levels; ``_2dheat``: heat map; ``_3dsurface``: the surface, clipped at the highest
    level (log10 heights with ``log``). Filled contours, heat map and 3D surface have a colour
    bar over what they draw.

    Levels: with any of ``vmin``, ``vmax``, ``vlevel`` given, the reference's
    ``arange(vmin, vmax, vlevel)`` (defaults 0.1, 10, 0.5 for those left out), heat-map colours
    ``vmin``..``vmax`` and the 3D clip at ``vmax``; when none of those levels lies inside the
    values, levels from the data and a note. With none given, levels from the data
    (:func:`~._levels.choose_levels`): a 0-100 scale for error and accuracy maps
    (``*_err``, ``*_acc``), else about 20 levels log-spaced above the minimum.

    Args:
        surface: a 2D surface file (ours or the reference's, any grid shape).
        surf_name: any array of the file, or ``train_err``/``test_err`` (100 - accuracy).
        vmin, vmax, vlevel: the reference's contour levels; None: not given.
        log: log10 heights in the 3D surface.
        fmt, dpi, show: as :func:`plot_1d_loss_err`.

    Returns:
        The four paths written.

    Raises:
        UsageError: a 1D file, unknown ``surf_name`` (the message lists the available ones), no
            computed values, bad levels.
    """
    check_output(fmt, dpi)
    if vmin is not None or vmax is not None or vlevel is not None:
        reference_limits(vmin, vmax, vlevel)  # refuse bad flags before reading anything
    check_dims(surface, 2)
    z = masked(surface, surf_name)  # (ny, nx)
    x, y = surface.xcoordinates, surface.ycoordinates
    levels = levels_of(z, surf_name, vmin=vmin, vmax=vmax, vlevel=vlevel)
    labels = (axis_label(surface, "x", "x"), axis_label(surface, "y", "y"))
    quantity = f"{surf_name} (%)" if levels.percent else surf_name
    paths = []
    with figures(show) as figs:
        fig = figs.new()
        ax = fig.add_subplot()
        contour_lines(ax, x, y, z, levels, fontsize=8)
        axes_xy(ax, labels)
        paths.append(save(fig, map_figure(surface.path, surf_name, "2dcontour"), fmt=fmt, dpi=dpi))

        fig = figs.new()
        _filled(fig, x, y, z, levels, label=quantity, labels=labels)
        paths.append(save(fig, map_figure(surface.path, surf_name, "2dcontourf"), fmt=fmt, dpi=dpi))

        fig = figs.new()
        extend = getattr(levels.norm, "extend", None) or beyond(z, levels.norm.vmin, levels.norm.vmax)
        heat_map(fig, x, y, z, norm=levels.norm, label=quantity, labels=labels, extend=extend,
                 ticks=None if levels.from_flags or levels.percent else bar_ticks(levels.values))
        paths.append(save(fig, map_figure(surface.path, surf_name, "2dheat"), fmt=fmt, dpi=dpi))

        fig = figs.new()
        _surface_3d(fig, x, y, z, levels, log=log, label=quantity, labels=labels)
        paths.append(save(fig, map_figure(surface.path, surf_name, "3dsurface"), fmt=fmt, dpi=dpi))
    return paths


def levels_of(z: np.ma.MaskedArray, name: str, **flags) -> Levels:
    """:func:`~._levels.choose_levels`, printing its note when the given levels miss the values."""
    levels, message = choose_levels(z, name, **flags)
    if message:
        note(message)
    return levels


def bar_ticks(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """A colour bar's ticks: every k-th level (at most BAR_TICKS), written as the labels are."""
    shown = every_kth(values, -(-len(values) // BAR_TICKS))
    return shown, level_texts(shown)


def contour_lines(ax, x, y, z, levels: Levels, *, fontsize: float, avoid: np.ndarray | None = None) -> None:
    """Contour lines of the levels inside the values, coloured dark to light with the level,
    a subset labelled where labels have room (:func:`~._labels.place_labels`); a constant array
    gets its value written instead. Labels keep clear of the polyline ``avoid`` ((n, 2) data
    coordinates, e.g. a trajectory) too."""
    lo, hi = float(z.min()), float(z.max())
    inside = (levels.values > lo) & (levels.values < hi)
    if not inside.any():  # a constant surface has no contour line
        ax.text(0.5, 0.5, f"constant: {lo:.4g}", transform=ax.transAxes, ha="center")
        ax.set_xlim(x.min(), x.max())
        ax.set_ylim(y.min(), y.max())
        return
    colours = [c for c, keep in zip(line_colours(len(levels.values)), inside) if keep]
    lines = ax.contour(x, y, z, levels=levels.values[inside], colors=colours, linewidths=1.0)
    place_labels(ax, lines, levels.labelled(lo, hi), texts=levels.texts(), fontsize=fontsize, avoid=avoid)


def _filled(fig: Figure, x, y, z, levels: Levels, *, label: str, labels: tuple[str, str]) -> None:
    ax = fig.add_subplot()
    filled = ax.contourf(x, y, z, levels=levels.values, cmap=FILLED_CMAP, norm=levels.norm,
                          extend="neither" if levels.percent else "both")
    bar = fig.colorbar(filled, ax=ax, label=label)
    ticks, texts = bar_ticks(levels.values)
    bar.set_ticks(ticks, labels=texts)
    axes_xy(ax, labels)


def _surface_3d(fig: Figure, x, y, z, levels: Levels, *, log: bool, label: str, labels: tuple[str, str]) -> None:
    # add_subplot attaches the 3D axes to the figure; the reference's Axes3D(fig) no longer
    # does on matplotlib >= 3.6, which is why its 3D figures came out blank
    ax = fig.add_subplot(projection="3d")
    heights = z if levels.top is None else np.ma.minimum(z, levels.top)
    if log:
        heights = np.ma.log10(np.ma.masked_less_equal(heights, 0))
        label = f"log10 {label}"
    if levels.percent and not log:
        zlo, zhi = 0.0, 100.0
    elif heights.count():
        zlo, zhi = float(heights.min()), float(heights.max())
    else:  # log of values all <= 0: nothing to draw
        zlo, zhi = 0.0, 1.0
    if not zlo < zhi:
        zlo, zhi = zlo - 0.5, zhi + 0.5
    norm = Normalize(zlo, zhi)  # colours span exactly the drawn heights
    xx, yy = np.meshgrid(x, y)  # (ny, nx)
    surf = ax.plot_surface(xx, yy, heights, cmap=SURFACE_CMAP, norm=norm, linewidth=0, antialiased=False)
    ax.set_zlim(zlo, zhi)
    fig.colorbar(surf, ax=ax, shrink=0.6, aspect=12, pad=0.12, label=label)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
