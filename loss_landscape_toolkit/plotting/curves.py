"""1D figures: loss and accuracy along one direction, and several runs overlaid.

Curves have gaps where points are not computed or not finite; a test split, when the file has
one, is dashed beside the solid training curve.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from .._naming import curve_figure, repeat_figure
from .._options import DPI
from ..errors import UsageError
from ..h5io import SurfaceFile
from ..stats import get_metric
from ._figures import (
    axis_label,
    check_dims,
    check_output,
    direction_text,
    figures,
    finish_1d,
    masked,
    save,
    sparse_ticks,
    xlim,
)


def plot_1d_loss_err(surface: SurfaceFile, *, xmin: float | None = None, xmax: float | None = None,
                     loss_max: float = 5, log: bool = False, fmt: str = "pdf", dpi: int = DPI,
                     show: bool = False) -> list[str]:
    """The reference's three 1D figures of a 1D surface file, next to it.

    ``_1d_loss_acc[_log]``: loss (blue, left axis) and accuracy (red, right axis), train solid
    and test dashed when present; ``_1d_train_loss[_log]``: the loss alone;
    ``_1d_train_err``: error = 100 - accuracy (test dashed when present).

    Args:
        surface: a 1D surface file (ours or the reference's), as read by ``h5io.read_surface_file``.
        xmin, xmax: x-axis limits; None: the grid's range.
        loss_max: upper limit of the loss axes (lower limit 0, or the data's smallest positive
            order of magnitude with ``log``).
        log: logarithmic loss axes (and ``_log`` in the names).
        fmt, dpi: figure format (pdf, png, svg) and resolution.
        show: also show the figures (needs a display).

    Returns:
        The paths written.

    Raises:
        UsageError: a 2D file, no ``train_loss``, bad limits.
    """
    check_output(fmt, dpi, loss_max=loss_max)
    check_dims(surface, 1)
    masked(surface, "train_loss")  # refuses a file without it (listing its arrays) or without values
    curves = _curves(surface)
    limits = xlim(surface.xcoordinates, xmin, xmax)
    x = surface.xcoordinates
    xlabel = x_label(surface)
    paths = []
    with figures(show) as figs:
        fig = figs.new()
        _draw_loss_acc(fig, [(x, curves, "")], limits=limits, loss_max=loss_max, log=log, xlabel=xlabel)
        paths.append(save(fig, curve_figure(surface.path, "loss_acc", log=log), fmt=fmt, dpi=dpi))

        fig = figs.new()
        ax = fig.add_subplot()
        ax.plot(x, curves["train"][0], "b-", linewidth=1)
        _loss_axis(ax, [curves["train"][0]], loss_max=loss_max, log=log)
        finish_1d(ax, limits, ylabel="Training loss", xlabel=xlabel)
        paths.append(save(fig, curve_figure(surface.path, "train_loss", log=log), fmt=fmt, dpi=dpi))

        if curves["train"][1] is not None:
            fig = figs.new()
            ax = fig.add_subplot()
            for split, style in (("train", "b-"), ("test", "b--")):
                if split in curves and curves[split][1] is not None:
                    ax.plot(x, 100 - curves[split][1], style, linewidth=1, label=f"{split} error")
            ax.set_ylim(0, 100)
            if "test" in curves:
                ax.legend()
            finish_1d(ax, limits, ylabel="Error (%)", xlabel=xlabel)
            paths.append(save(fig, curve_figure(surface.path, "train_err"), fmt=fmt, dpi=dpi))
    return paths


def plot_1d_loss_err_repeat(surfaces: Sequence[SurfaceFile], *, out_base: str, xmin: float | None = None,
                            xmax: float | None = None, loss_max: float = 5, log: bool = False,
                            fmt: str = "pdf", dpi: int = DPI, show: bool = False) -> str:
    """Several 1D surface files on one loss/accuracy figure (the paper's repeatability plot).

    Args:
        surfaces: 1D surface files, e.g. the same model along directions ``--idx 1..10``.
        out_base: the figure is ``out_base + '_1d_loss_err_repeat[_log].' + fmt``.
        xmin, xmax, loss_max, log, fmt, dpi, show: as :func:`plot_1d_loss_err`.

    Returns:
        The path written.

    Raises:
        UsageError: no files, or any file 2D or without ``train_loss``.
    """
    check_output(fmt, dpi, loss_max=loss_max)
    if not surfaces:
        raise UsageError("the repeat plot needs at least one surface file")
    runs = []
    for surface in surfaces:
        check_dims(surface, 1)
        masked(surface, "train_loss")
        runs.append((surface.xcoordinates, _curves(surface), os.path.basename(surface.path)))
    lo = min(r[0].min() for r in runs)
    hi = max(r[0].max() for r in runs)
    limits = (lo if xmin is None else xmin, hi if xmax is None else xmax)
    with figures(show) as figs:
        fig = figs.new()
        _draw_loss_acc(fig, runs, limits=limits, loss_max=loss_max, log=log, xlabel=x_label(surfaces[0]))
        return save(fig, repeat_figure(out_base, log=log), fmt=fmt, dpi=dpi)


def x_label(surface: SurfaceFile) -> str:
    """The 1D x-axis: 'x (filter-normalized direction)' and the like when the file records how
    its direction was made, else 'alpha' (the step along it)."""
    return "alpha" if direction_text(surface, "x") is None else axis_label(surface, "x", "x")


def _curves(surface: SurfaceFile) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """``{split: (loss, acc or None)}`` for the splits with a loss array, NaN where masked."""
    out = {}
    for split in ("train", "test"):
        if f"{split}_loss" not in surface.arrays:
            continue
        loss = _finite(get_metric(surface, f"{split}_loss").values)
        acc = (_finite(get_metric(surface, f"{split}_acc").values)
               if f"{split}_acc" in surface.arrays else None)
        out[split] = (loss, acc)
    return out


def _finite(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, np.nan)  # gaps in lines


def _draw_loss_acc(fig: Figure, runs, *, limits, loss_max: float, log: bool, xlabel: str) -> None:
    """Loss on the left axis (blue), accuracy on a twin right axis (red), for every run."""
    ax1 = fig.add_subplot()
    ax2 = ax1.twinx()
    width = 1 if len(runs) == 1 else 0.8
    losses = []
    for x, curves, _ in runs:
        for split, style in (("train", "-"), ("test", "--")):
            if split not in curves:
                continue
            loss, acc = curves[split]
            losses.append(loss)
            ax1.plot(x, loss, "b" + style, linewidth=width, label=f"{split} loss" if len(runs) == 1 else None)
            if acc is not None:
                ax2.plot(x, acc, "r" + style, linewidth=width, label=f"{split} accuracy" if len(runs) == 1 else None)
    _loss_axis(ax1, losses, loss_max=loss_max, log=log)
    ax1.set_ylabel("Loss", color="b", fontsize="xx-large")
    ax1.tick_params("y", colors="b", labelsize="x-large")
    ax1.tick_params("x", labelsize="x-large")
    ax1.set_xlabel(xlabel, fontsize="x-large")
    sparse_ticks(ax1)
    ax2.set_ylabel("Accuracy", color="r", fontsize="xx-large")
    ax2.tick_params("y", colors="r", labelsize="x-large")
    ax2.set_ylim(0, 100)
    if limits[0] < limits[1]:
        ax1.set_xlim(*limits)
    if len(runs) > 1:
        ax1.set_title(f"{len(runs)} runs")
    elif "test" in runs[0][1]:
        ax1.legend(loc="upper left")
        ax2.legend(loc="upper right")


def _loss_axis(ax, losses: Sequence[np.ndarray], *, loss_max: float, log: bool) -> None:
    if not log:
        ax.set_ylim(0, loss_max)
        return
    ax.set_yscale("log")
    positive = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in losses])
    if positive.size:
        bottom = 10.0 ** np.floor(np.log10(positive.min()))
        ax.set_ylim(bottom, max(loss_max, 10 * bottom))
