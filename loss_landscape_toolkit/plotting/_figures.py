"""What every figure shares: making and saving figures headless, checking options, masking values.

Figures are drawn on ``matplotlib.figure.Figure`` objects and saved with matplotlib's own
non-interactive renderers (Agg for png), never through pyplot, so plotting works headless with no
configuration and whatever ``MPLBACKEND`` says; nothing stays open after a call. pyplot is
imported only for ``show=True``, and only when a display exists: without one a warning line says
the figures were saved only.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

import matplotlib
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import _files
from .._options import FORMATS, NORMS
from ..errors import RangeError, UsageError
from ..h5io import SurfaceFile
from ..stats import get_metric

NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}
MASKED_COLOUR = "0.8"  # heat-map cells that are not computed, NaN or inf


class Figures:
    """The figures of one call: plain Figures, or pyplot ones shown at the end with ``show``."""

    def __init__(self, show: bool):
        self.show = show and _display_available()
        self._shown: list[Figure] = []

    def new(self, **kwargs) -> Figure:
        if not self.show:
            return Figure(**kwargs)
        import matplotlib.pyplot as plt

        fig = plt.figure(**kwargs)
        self._shown.append(fig)
        return fig

    def finish(self, ok: bool) -> None:
        if not self._shown:
            return
        import matplotlib.pyplot as plt

        try:
            if ok:
                plt.show()
        finally:
            for fig in self._shown:
                plt.close(fig)


@contextlib.contextmanager
def figures(show: bool) -> Iterator[Figures]:
    """A :class:`Figures` for the block; with ``show``, the figures are shown when it ends."""
    figs = Figures(show)
    try:
        yield figs
    except BaseException:
        figs.finish(ok=False)
        raise
    figs.finish(ok=True)


def _display_available() -> bool:
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")) and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        reason = "no display (DISPLAY and WAYLAND_DISPLAY are not set)"
    else:
        try:
            import matplotlib.pyplot  # resolves the backend

            backend = matplotlib.get_backend().lower()
        except (ImportError, RuntimeError) as exc:  # a configured GUI toolkit that cannot start
            reason = f"matplotlib cannot open a window ({exc})"
        else:
            if backend not in NON_INTERACTIVE:
                return True
            reason = f"matplotlib's backend {backend!r} cannot open windows"
    warn(f"--show: {reason}; the figures are saved only")
    return False


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def note(message: str) -> None:
    print(f"note: {message}", flush=True)


def save(fig: Figure, base: str, *, fmt: str, dpi: int) -> str:
    """Save as ``base.fmt`` (written under a temporary name, then renamed: never half a file)."""
    path = f"{base}.{fmt}"
    try:
        with _files.replacing(path, sync=False) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}; check that its folder is writable") from None
    return path


def check_output(fmt: str, dpi: int, *, loss_max: float = 1.0) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"unknown figure format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if dpi < 1:
        raise UsageError(f"--dpi must be >= 1, got {dpi}")
    if not loss_max > 0:
        raise RangeError(f"--loss_max must be > 0, got {loss_max}")


def check_dims(surface: SurfaceFile, dims: int) -> None:
    """Refuse a 1D file where 2D figures are asked for, and the other way round.

    Raises:
        UsageError: the file has the other number of axes, or (2D) fewer than 2 points on one.
    """
    is_2d = surface.ycoordinates is not None
    if dims == 2 and not is_2d:
        raise UsageError(f"{surface.path} is a 1D surface file (no ycoordinates); plot it with plot_1D.py")
    if dims == 1 and is_2d:
        raise UsageError(f"{surface.path} is a 2D surface file; plot it with plot_2D.py (or h52vtp.py)")
    if dims == 2 and min(surface.shape) < 2:
        raise UsageError(f"{surface.path}: 2D figures need at least 2 points on each axis; the grid is "
                         f"{len(surface.xcoordinates)} (x) by {len(surface.ycoordinates)} (y)")


def masked(surface: SurfaceFile, name: str) -> np.ma.MaskedArray:
    """``name`` with unfinished, NaN and inf points masked; refuses an array with none left."""
    metric = get_metric(surface, name)
    values = np.ma.masked_invalid(metric.values)
    if values.count() == 0:
        raise UsageError(f"{surface.path}: no computed finite values of {name} "
                         f"({int(metric.done.sum())}/{metric.done.size} points computed)")
    return values


def xlim(x: np.ndarray, xmin: float | None, xmax: float | None) -> tuple[float, float]:
    return (float(x.min()) if xmin is None else xmin, float(x.max()) if xmax is None else xmax)


def finish_1d(ax, limits: tuple[float, float], *, ylabel: str, xlabel: str = "alpha") -> None:
    if limits[0] < limits[1]:
        ax.set_xlim(*limits)
    ax.set_ylabel(ylabel, fontsize="xx-large")
    ax.set_xlabel(xlabel, fontsize="x-large")
    ax.tick_params(labelsize="x-large")
    sparse_ticks(ax)


def sparse_ticks(ax, *, both: bool = False) -> None:
    """At most 6 round x ticks (and y ones with ``both``): at the large tick font, more touch."""
    for axis in (ax.xaxis, ax.yaxis) if both else (ax.xaxis,):
        axis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))


def direction_text(surface: SurfaceFile, axis: str) -> str | None:
    """How the file says its ``axis`` ('x' or 'y') direction was made, e.g. 'filter-normalized
    direction'; None when it does not say (files of the reference, a reused --dir_file)."""
    settings = surface.attrs.get("settings")
    if not isinstance(settings, dict) or settings.get("dir_file"):
        return None
    if axis == "y" and settings.get("same_dir"):
        axis = "x"
    if settings.get("model_file2" if axis == "x" else "model_file3"):
        return "0: model_file, 1: " + ("model_file2" if axis == "x" else "model_file3")
    norm = settings.get(f"{axis}norm")
    if norm in ("", "none"):
        return "random direction, not normalized"
    if norm in NORMS:
        return f"{norm}-normalized direction"
    return None


def axis_label(surface: SurfaceFile, axis: str, plain: str) -> str:
    """``plain`` followed by the direction's description when the file has one."""
    text = direction_text(surface, axis)
    return plain if text is None else f"{plain} ({text})"


def axes_xy(ax, labels: tuple[str, str] = ("x", "y")) -> None:
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])


def heat_map(fig: Figure, x, y, z, *, vmin: float | None = None, vmax: float | None = None, label: str,
             norm: Normalize | None = None, ticks: tuple[np.ndarray, list[str]] | None = None,
             labels: tuple[str, str] = ("x", "y"), extend: str = "neither") -> None:
    """Cells centred on the grid points, x horizontal, y upwards (matplotlib; no seaborn), and
    a colour bar over the colour range (``norm``, else ``vmin``..``vmax``), with ``ticks``
    (values and texts) when given."""
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad=MASKED_COLOUR)
    mesh = ax.pcolormesh(x, y, z, shading="nearest", cmap=cmap, norm=norm or Normalize(vmin, vmax))
    bar = fig.colorbar(mesh, ax=ax, label=label, extend=extend)
    if ticks is not None:
        bar.set_ticks(ticks[0], labels=ticks[1])
    axes_xy(ax, labels)


def beyond(z: np.ma.MaskedArray, lo: float, hi: float) -> str:
    """A colour bar's ``extend``: which ends of the colour range ``lo``..``hi`` the values pass."""
    low, high = bool(z.min() < lo), bool(z.max() > hi)
    return "both" if low and high else "min" if low else "max" if high else "neither"
