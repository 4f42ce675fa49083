"""Trajectories: an optimization path projected on two directions, alone or on the loss contours.

The path's coordinates come from a projection file (plot_trajectory.py); with PCA directions the
axes say how much of the path's variance each principal component holds.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .._naming import trajectory_contour_figure
from .._options import DPI
from ..h5io import ProjectionFile, SurfaceFile
from ._figures import check_dims, check_output, figures, masked, save, sparse_ticks, warn
from ._levels import reference_limits
from .contours import contour_lines, levels_of


def plot_trajectory(proj: ProjectionFile, *, pc_variance: np.ndarray | None = None, fmt: str = "pdf",
                    dpi: int = DPI, show: bool = False) -> str:
    """The projected optimization path, as ``proj_file + '.' + fmt``.

    Args:
        proj: a projection file (``proj_xcoord``, ``proj_ycoord``; optional ``epochs``).
        pc_variance: the share of variance of each PC (:func:`pc_variance` of its direction
            file), shown on the axes; None: plain axis labels.
        fmt, dpi, show: as :func:`~.curves.plot_1d_loss_err`.

    Returns:
        The path written.
    """
    check_output(fmt, dpi)
    with figures(show) as figs:
        fig = figs.new()
        ax = fig.add_subplot()
        ax.plot(proj.xcoord, proj.ycoord, marker=".")
        _annotate_ends(ax, proj)
        _label_pcs(ax, pc_variance)
        ax.tick_params(labelsize="x-large")
        sparse_ticks(ax, both=True)
        return save(fig, proj.path, fmt=fmt, dpi=dpi)


def plot_contour_trajectory(surface: SurfaceFile, proj: ProjectionFile, *,
                            pc_variance: np.ndarray | None = None, surf_name: str = "train_loss",
                            vmin: float | None = None, vmax: float | None = None, vlevel: float | None = None,
                            decay_epochs: Sequence[int] = (), fmt: str = "pdf", dpi: int = DPI,
                            show: bool = False) -> str:
    """Contours of the surface with the trajectory on top.

    Contour lines (labelled where the labels fit), the projected path, PC variance on the axes,
    and the points of ``decay_epochs`` (learning-rate decays) marked in red when the projection
    file records its epochs. Levels as :func:`~.contours.plot_2d_contour`; with the reference's
    flags, its extra rings of high loss 10, 100, ..., 1e8 above ``vmax`` too, all coloured in
    the order of their level.

    Args:
        surface: a 2D surface file computed on the PCA directions.
        proj: the projection file.
        pc_variance: as :func:`plot_trajectory`.
        surf_name, vmin, vmax, vlevel: as :func:`~.contours.plot_2d_contour`.
        decay_epochs: epochs to mark, e.g. (150, 225, 275).
        fmt, dpi, show: as :func:`~.curves.plot_1d_loss_err`.

    Returns:
        ``proj_file + '_' + surf_name + '_2dcontour_proj.' + fmt``.

    Raises:
        UsageError: a 1D file, unknown ``surf_name``, bad levels.
    """
    check_output(fmt, dpi)
    if vmin is not None or vmax is not None or vlevel is not None:
        reference_limits(vmin, vmax, vlevel)
    check_dims(surface, 2)
    z = masked(surface, surf_name)
    x, y = surface.xcoordinates, surface.ycoordinates
    with figures(show) as figs:
        fig = figs.new()
        ax = fig.add_subplot()
        levels = levels_of(z, surf_name, vmin=vmin, vmax=vmax, vlevel=vlevel, rings=True)
        # black, over the lines, and kept clear of their labels
        ax.plot(proj.xcoord, proj.ycoord, marker=".", color="black", zorder=3)
        contour_lines(ax, x, y, z, levels, fontsize=7, avoid=np.column_stack([proj.xcoord, proj.ycoord]))
        _mark_epochs(ax, proj, decay_epochs)
        _label_pcs(ax, pc_variance)
        ax.tick_params(labelsize="x-large")
        sparse_ticks(ax, both=True)
        return save(fig, trajectory_contour_figure(proj.path, surf_name), fmt=fmt, dpi=dpi)


def pc_variance(extras: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """``explained_variance_ratio_`` of a PCA direction file's extra arrays, or None (random
    directions have none)."""
    ratio = extras.get("explained_variance_ratio_")
    return None if ratio is None else np.asarray(ratio, dtype=np.float64).reshape(-1)


def _annotate_ends(ax, proj: ProjectionFile) -> None:
    epochs = _epochs(proj)
    if epochs is None or not len(epochs):
        return
    for i in {0, len(epochs) - 1}:
        ax.annotate(f"epoch {epochs[i]}", (proj.xcoord[i], proj.ycoord[i]), textcoords="offset points",
                    xytext=(4, 4), fontsize="small")


def _mark_epochs(ax, proj: ProjectionFile, decay_epochs: Sequence[int]) -> None:
    if not len(decay_epochs):
        return
    epochs = _epochs(proj)
    if epochs is None:
        warn(f"{proj.path} records no epochs (attribute 'epochs'); --decay_epochs not marked")
        return
    absent = [e for e in decay_epochs if e not in epochs]
    if absent:
        warn(f"decay epoch(s) {', '.join(map(str, absent))} are not among the projected checkpoints "
              f"(epochs {epochs[0]}..{epochs[-1]}); not marked")
    for e in decay_epochs:
        if e in epochs:
            i = epochs.index(e)
            ax.plot(proj.xcoord[i], proj.ycoord[i], "o", color="red", markersize=6, zorder=3)
            ax.annotate(f"lr decay (epoch {e})", (proj.xcoord[i], proj.ycoord[i]), color="red",
                        textcoords="offset points", xytext=(5, -10), fontsize="small")


def _label_pcs(ax, ratio: np.ndarray | None) -> None:
    if ratio is not None and len(ratio) >= 2:
        ax.set_xlabel(f"1st PC: {100 * ratio[0]:.2f} %", fontsize="xx-large")
        ax.set_ylabel(f"2nd PC: {100 * ratio[1]:.2f} %", fontsize="xx-large")
    else:
        ax.set_xlabel("x", fontsize="xx-large")
        ax.set_ylabel("y", fontsize="xx-large")


def _epochs(proj: ProjectionFile) -> list[int] | None:
    """The epoch of each projected point (attribute ``epochs``), or None when absent/unusable."""
    raw = proj.attrs.get("epochs")
    if raw is None:
        return None
    try:
        epochs = list(np.asarray(raw).reshape(-1)) if not isinstance(raw, list) else raw
        epochs = [int(e) for e in epochs]
    except (ValueError, TypeError):
        warn(f"{proj.path}: attribute 'epochs' is not a list of integers; epochs not shown")
        return None
    if len(epochs) != len(proj.xcoord):
        warn(f"{proj.path}: {len(epochs)} epochs for {len(proj.xcoord)} points; epochs not shown")
        return None
    return epochs
