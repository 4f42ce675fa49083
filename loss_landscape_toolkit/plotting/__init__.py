"""Every figure of the toolkit: 1D curves, 2D contours, heat maps, 3D surfaces, trajectories,
Hessian ratio maps (REFERENCE.md section 9), written next to the input file with the
reference's names (section 5.3) and the suffix of ``fmt`` (pdf, png or svg).

Figures are drawn on ``matplotlib.figure.Figure`` objects and saved with matplotlib's own
non-interactive renderers (Agg for png), never through pyplot, so plotting works headless
with no configuration and whatever ``MPLBACKEND`` says; nothing stays open after a call.
pyplot is imported only for ``show=True``, and only when a display exists: without one a
warning line says the figures were saved only.

Values that are not computed, NaN or inf are masked (blank in line plots and contours, grey in
heat maps); a 3D surface is clipped at ``vmax``. Arrays are ``(ny, nx)`` with
``Z[iy, ix] = f(x[ix], y[iy])`` (h5_util), drawn with x horizontal and y vertical.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import sys
from typing import Iterator, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import h5io as h5_util
from .. import stats as surface_stats
from ..errors import RangeError, UsageError

FORMATS = ("pdf", "png", "svg")
DPI = 300  # as the reference
NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}
HIGH_LEVELS = np.logspace(1, 8, num=8)  # the reference's rings of high loss on trajectory plots
MASKED_COLOUR = "0.8"  # heat-map cells that are not computed, NaN or inf


# --------------------------------------------------------------------------- CLI pieces
def add_output_args(parser: argparse.ArgumentParser, *, show: bool = True) -> None:
    """``--format``, ``--dpi`` and (unless ``show=False``, for a parser that has it already)
    ``--show``, shared by every plotting CLI."""
    g = parser.add_argument_group("figure output")
    g.add_argument("--format", default="pdf", choices=FORMATS,
                   help="figure format; names are the reference's with this suffix")
    g.add_argument("--dpi", type=int, default=DPI, help="resolution of png figures (and of rasters in pdf/svg)")
    if show:
        g.add_argument("--show", action="store_true",
                       help="also show the figures on screen (needs a display; otherwise a warning)")


def add_eig_arg(parser: argparse.ArgumentParser) -> None:
    """``--eig``: the re-plot path of plot_hessian_eigen.py's results, in plot_1D/plot_2D."""
    parser.add_argument("--eig", action="store_true",
                        help="plot the Hessian eigenvalue ratios of the file (from plot_hessian_eigen.py) "
                             "instead of the loss, and the spectral density at the centre if stored")


# --------------------------------------------------------------------------- figures
class _Figures:
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
def _figures(show: bool) -> Iterator[_Figures]:
    figs = _Figures(show)
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
            import matplotlib.pyplot  # noqa: F401  (resolves the backend)

            backend = matplotlib.get_backend().lower()
        except (ImportError, RuntimeError) as exc:  # a configured GUI toolkit that cannot start
            reason = f"matplotlib cannot open a window ({exc})"
        else:
            if backend not in NON_INTERACTIVE:
                return True
            reason = f"matplotlib's backend {backend!r} cannot open windows"
    _warn(f"--show: {reason}; the figures are saved only")
    return False


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _note(message: str) -> None:
    print(f"note: {message}", flush=True)


def _save(fig: Figure, base: str, *, fmt: str, dpi: int) -> str:
    """Save as ``base.fmt`` (written to a temporary name, then renamed: never half a file)."""
    path = f"{base}.{fmt}"
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}; check that its folder is writable") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def _check_output(fmt: str, dpi: int, *, loss_max: float = 1.0) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"unknown figure format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if dpi < 1:
        raise UsageError(f"--dpi must be >= 1, got {dpi}")
    if not loss_max > 0:
        raise RangeError(f"--loss_max must be > 0, got {loss_max}")


def _check_levels(vmin: float, vmax: float, vlevel: float) -> None:
    if not np.isfinite([vmin, vmax, vlevel]).all():
        raise RangeError(f"--vmin, --vmax and --vlevel must be finite, got {vmin}, {vmax}, {vlevel}")
    if not vmin < vmax:
        raise RangeError(f"--vmin ({vmin}) must be smaller than --vmax ({vmax})")
    if not vlevel > 0:
        raise RangeError(f"--vlevel (the contour spacing) must be > 0, got {vlevel}")


# --------------------------------------------------------------------------- reading
def _read_surface(surf_file: str, *, dims: int | None = None) -> h5_util.SurfaceFile:
    if not surf_file:
        raise UsageError("no surface file given; pass it with --surf_file/-f")
    surface = h5_util.read_surface_file(surf_file)
    is_2d = surface.ycoordinates is not None
    if dims == 2 and not is_2d:
        raise UsageError(f"{surf_file} is a 1D surface file (no ycoordinates); plot it with plot_1D.py")
    if dims == 1 and is_2d:
        raise UsageError(f"{surf_file} is a 2D surface file; plot it with plot_2D.py (or h52vtp.py)")
    if dims == 2 and min(surface.shape) < 2:
        raise UsageError(f"{surf_file}: 2D figures need at least 2 points on each axis; the grid is "
                         f"{len(surface.xcoordinates)} (x) by {len(surface.ycoordinates)} (y)")
    return surface


def _masked(surface: h5_util.SurfaceFile, name: str) -> np.ma.MaskedArray:
    """``name`` with unfinished, NaN and inf points masked; refuses an array with none left."""
    metric = surface_stats.get_metric(surface, name)
    values = np.ma.masked_invalid(metric.values)
    if values.count() == 0:
        raise UsageError(f"{surface.path}: no computed finite values of {name} "
                         f"({int(metric.done.sum())}/{metric.done.size} points computed)")
    return values


def _pc_variance(dir_file: str) -> np.ndarray | None:
    """explained_variance_ratio_ of a PCA direction file, or None."""
    if not dir_file:
        return None
    ratio = h5_util.read_direction_extras(dir_file).get("explained_variance_ratio_")
    return None if ratio is None else np.asarray(ratio, dtype=np.float64).reshape(-1)


def _label_pcs(ax, ratio: np.ndarray | None) -> None:
    if ratio is not None and len(ratio) >= 2:
        ax.set_xlabel(f"1st PC: {100 * ratio[0]:.2f} %", fontsize="xx-large")
        ax.set_ylabel(f"2nd PC: {100 * ratio[1]:.2f} %", fontsize="xx-large")
    else:
        ax.set_xlabel("x")
        ax.set_ylabel("y")


def _epochs(proj: h5_util.ProjectionFile) -> list[int] | None:
    """The epoch of each projected point (attribute ``epochs``), or None when absent/unusable."""
    raw = proj.attrs.get("epochs")
    if raw is None:
        return None
    try:
        epochs = json.loads(raw) if isinstance(raw, str) else list(np.asarray(raw).reshape(-1))
        epochs = [int(e) for e in epochs]
    except (ValueError, TypeError):
        _warn(f"{proj.path}: attribute 'epochs' is not a list of integers; epochs not shown")
        return None
    if len(epochs) != len(proj.xcoord):
        _warn(f"{proj.path}: {len(epochs)} epochs for {len(proj.xcoord)} points; epochs not shown")
        return None
    return epochs


# --------------------------------------------------------------------------- 1D
def plot_1d_loss_err(surf_file: str, *, xmin: float | None = None, xmax: float | None = None,
                     loss_max: float = 5, log: bool = False, fmt: str = "pdf", dpi: int = DPI,
                     show: bool = False) -> list[str]:
    """The reference's three 1D figures (REFERENCE.md 9.1) of a 1D surface file.

    ``_1d_loss_acc[_log]``: loss (blue, left axis) and accuracy (red, right axis), train solid
    and test dashed when present; ``_1d_train_loss[_log]``: the loss alone;
    ``_1d_train_err``: error = 100 - accuracy (test dashed when present).

    Args:
        surf_file: a 1D surface file (ours or the reference's).
        xmin, xmax: x-axis limits; None: the grid's range.
        loss_max: upper limit of the loss axes (lower limit 0, or the data's smallest positive
            order of magnitude with ``log``).
        log: logarithmic loss axes (and ``_log`` in the names).
        fmt, dpi: figure format (pdf, png, svg) and resolution.
        show: also show the figures (needs a display).

    Returns:
        The paths written.

    Raises:
        UsageError: missing or non-surface file, a 2D file, no ``train_loss``, bad limits.
    """
    _check_output(fmt, dpi, loss_max=loss_max)
    surface = _read_surface(surf_file, dims=1)
    _masked(surface, "train_loss")  # refuses a file without it (listing its arrays) or without values
    curves = _curves(surface)
    xlim = _xlim(surface.xcoordinates, xmin, xmax)
    x = surface.xcoordinates
    log_tag = "_log" if log else ""
    paths = []
    with _figures(show) as figs:
        fig = figs.new()
        _draw_loss_acc(fig, [(x, curves, "")], xlim=xlim, loss_max=loss_max, log=log)
        paths.append(_save(fig, f"{surf_file}_1d_loss_acc{log_tag}", fmt=fmt, dpi=dpi))

        fig = figs.new()
        ax = fig.add_subplot()
        ax.plot(x, curves["train"][0], "b-", linewidth=1)
        _loss_axis(ax, [curves["train"][0]], loss_max=loss_max, log=log)
        _finish_1d(ax, xlim, ylabel="Training loss")
        paths.append(_save(fig, f"{surf_file}_1d_train_loss{log_tag}", fmt=fmt, dpi=dpi))

        if curves["train"][1] is not None:
            fig = figs.new()
            ax = fig.add_subplot()
            for split, style in (("train", "b-"), ("test", "b--")):
                if split in curves and curves[split][1] is not None:
                    ax.plot(x, 100 - curves[split][1], style, linewidth=1, label=f"{split} error")
            ax.set_ylim(0, 100)
            if "test" in curves:
                ax.legend()
            _finish_1d(ax, xlim, ylabel="Error (%)")
            paths.append(_save(fig, f"{surf_file}_1d_train_err", fmt=fmt, dpi=dpi))
    return paths


def plot_1d_loss_err_repeat(surf_files: Sequence[str], *, out_base: str, xmin: float | None = None,
                            xmax: float | None = None, loss_max: float = 5, log: bool = False,
                            fmt: str = "pdf", dpi: int = DPI, show: bool = False) -> str:
    """Several 1D surface files on one loss/accuracy figure (the paper's repeatability plot).

    Args:
        surf_files: 1D surface files, e.g. the same model along directions ``--idx 1..10``.
        out_base: the figure is ``out_base + '_1d_loss_err_repeat[_log].' + fmt``.
        xmin, xmax, loss_max, log, fmt, dpi, show: as :func:`plot_1d_loss_err`.

    Returns:
        The path written.

    Raises:
        UsageError: no files, or any file missing, 2D, or without ``train_loss``.
    """
    _check_output(fmt, dpi, loss_max=loss_max)
    if not surf_files:
        raise UsageError("the repeat plot needs at least one surface file")
    runs = []
    for path in surf_files:
        surface = _read_surface(path, dims=1)
        _masked(surface, "train_loss")
        curves = _curves(surface)
        runs.append((surface.xcoordinates, curves, os.path.basename(path)))
    lo = min(r[0].min() for r in runs)
    hi = max(r[0].max() for r in runs)
    xlim = (lo if xmin is None else xmin, hi if xmax is None else xmax)
    with _figures(show) as figs:
        fig = figs.new()
        _draw_loss_acc(fig, runs, xlim=xlim, loss_max=loss_max, log=log)
        return _save(fig, f"{out_base}_1d_loss_err_repeat{'_log' if log else ''}", fmt=fmt, dpi=dpi)


def repeat_files(prefix: str, idx_min: int, idx_max: int) -> list[str]:
    """The surface files of the repeat experiment, for idx in ``[idx_min, idx_max]``.

    For each idx the reference's name ``{prefix}_{idx}.h5`` is taken if it exists; otherwise
    ours: ``prefix`` is the direction file's name without ``.h5`` and without ``_idx=N``, and
    the surface file of idx is ``{prefix}_idx={idx}.h5_<range>.h5`` (idx 0: ``{prefix}.h5_<range>.h5``),
    as plot_surface.py names it.

    Raises:
        UsageError: nothing found, a bad idx range, or two surface files for one idx
            (e.g. two resolutions): pass the files explicitly then.
    """
    if idx_min > idx_max or idx_min < 0:
        raise RangeError(f"--idx_min {idx_min} / --idx_max {idx_max}: need 0 <= idx_min <= idx_max")
    found, missing = [], []
    for idx in range(idx_min, idx_max + 1):
        reference = f"{prefix}_{idx}.h5"
        if os.path.isfile(reference):
            found.append(reference)
            continue
        stem = prefix if idx == 0 else f"{prefix}_idx={idx}"
        matches = sorted(p for p in glob.glob(glob.escape(f"{stem}.h5_") + "*.h5") if os.path.isfile(p))
        if len(matches) > 1:
            raise UsageError(f"--prefix {prefix}: {len(matches)} surface files for idx {idx} "
                             f"({', '.join(os.path.basename(m) for m in matches[:3])}); "
                             f"pass the files to overlay with -f FILE1 FILE2 ...")
        (found if matches else missing).extend(matches or [idx])
    if not found:
        raise UsageError(f"--prefix {prefix}: no surface file for idx {idx_min}..{idx_max} (looked for "
                         f"{prefix}_<idx>.h5 and {prefix}_idx=<idx>.h5_<range>.h5)")
    if missing:
        _note(f"--prefix: no surface file for idx {', '.join(map(str, missing))}; overlaying {len(found)} file(s)")
    return found


def _curves(surface: h5_util.SurfaceFile) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """``{split: (loss, acc or None)}`` for the splits with a loss array, NaN where masked."""
    out = {}
    for split in ("train", "test"):
        if f"{split}_loss" not in surface.arrays:
            continue
        loss = _finite(surface_stats.get_metric(surface, f"{split}_loss").values)
        acc = (_finite(surface_stats.get_metric(surface, f"{split}_acc").values)
               if f"{split}_acc" in surface.arrays else None)
        out[split] = (loss, acc)
    return out


def _finite(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, np.nan)  # gaps in lines


def _xlim(x: np.ndarray, xmin: float | None, xmax: float | None) -> tuple[float, float]:
    return (float(x.min()) if xmin is None else xmin, float(x.max()) if xmax is None else xmax)


def _draw_loss_acc(fig: Figure, runs, *, xlim, loss_max: float, log: bool) -> None:
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
    ax2.set_ylabel("Accuracy", color="r", fontsize="xx-large")
    ax2.tick_params("y", colors="r", labelsize="x-large")
    ax2.set_ylim(0, 100)
    if xlim[0] < xlim[1]:
        ax1.set_xlim(*xlim)
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


def _finish_1d(ax, xlim, *, ylabel: str) -> None:
    if xlim[0] < xlim[1]:
        ax.set_xlim(*xlim)
    ax.set_ylabel(ylabel, fontsize="xx-large")
    ax.tick_params(labelsize="x-large")


# --------------------------------------------------------------------------- 2D
def plot_2d_contour(surf_file: str, *, surf_name: str = "train_loss", vmin: float = 0.1, vmax: float = 10,
                    vlevel: float = 0.5, log: bool = False, fmt: str = "pdf", dpi: int = DPI,
                    show: bool = False) -> list[str]:
    """The reference's four 2D figures (REFERENCE.md 9.2) of one array of a 2D surface file.

    ``_{surf_name}_2dcontour``: labelled contour lines at ``arange(vmin, vmax, vlevel)``;
    ``_2dcontourf``: filled contours at the same levels; ``_2dheat``: heat map with colour
    limits ``vmin``, ``vmax``; ``_3dsurface``: the surface clipped at ``vmax`` (log10 heights
    with ``log``). When no requested level lies inside the values (e.g. an accuracy with the
    loss defaults), automatic levels are used and a note says so.

    Args:
        surf_file: a 2D surface file (ours or the reference's, any grid shape).
        surf_name: any array of the file, or ``train_err``/``test_err`` (100 - accuracy).
        vmin, vmax, vlevel: contour levels and colour limits.
        log: log10 heights in the 3D surface.
        fmt, dpi, show: as :func:`plot_1d_loss_err`.

    Returns:
        The four paths written.

    Raises:
        UsageError: missing, non-surface or 1D file, unknown ``surf_name`` (the message lists
            the available ones), no computed values, bad levels.
    """
    _check_output(fmt, dpi)
    _check_levels(vmin, vmax, vlevel)
    surface = _read_surface(surf_file, dims=2)
    z = _masked(surface, surf_name)  # (ny, nx)
    x, y = surface.xcoordinates, surface.ycoordinates
    levels = _contour_levels(z, vmin, vmax, vlevel, surf_name)
    base = f"{surf_file}_{surf_name}"
    paths = []
    with _figures(show) as figs:
        fig = figs.new()
        ax = fig.add_subplot()
        _contour_lines(ax, x, y, z, levels, cmap="summer", fontsize=8)
        _axes_xy(ax)
        paths.append(_save(fig, f"{base}_2dcontour", fmt=fmt, dpi=dpi))

        fig = figs.new()
        ax = fig.add_subplot()
        filled = ax.contourf(x, y, z, levels=levels, cmap="summer", extend="both")
        fig.colorbar(filled, ax=ax)
        _axes_xy(ax)
        paths.append(_save(fig, f"{base}_2dcontourf", fmt=fmt, dpi=dpi))

        fig = figs.new()
        _heat_map(fig, x, y, z, vmin=vmin, vmax=vmax, label=surf_name)
        paths.append(_save(fig, f"{base}_2dheat", fmt=fmt, dpi=dpi))

        fig = figs.new()
        _surface_3d(fig, x, y, z, vmax=vmax, log=log, label=surf_name)
        paths.append(_save(fig, f"{base}_3dsurface", fmt=fmt, dpi=dpi))
    return paths


def _contour_levels(z: np.ma.MaskedArray, vmin: float, vmax: float, vlevel: float, name: str) -> np.ndarray:
    levels = np.arange(vmin, vmax, vlevel)
    lo, hi = float(z.min()), float(z.max())
    if len(levels) >= 2 and ((levels > lo) & (levels < hi)).any():
        return levels
    auto = MaxNLocator(nbins=10).tick_values(lo, hi)
    if lo < hi:
        _note(f"no contour level of arange({vmin:g}, {vmax:g}, {vlevel:g}) lies within the values of "
              f"{name} ({lo:.4g} .. {hi:.4g}); using automatic levels (set --vmin/--vmax/--vlevel)")
    return auto


def _contour_lines(ax, x, y, z, levels, **style) -> None:
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


def _axes_xy(ax) -> None:
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def _heat_map(fig: Figure, x, y, z, *, vmin: float | None, vmax: float | None, label: str) -> None:
    """Cells centred on the grid points, x horizontal, y upwards (matplotlib; no seaborn)."""
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad=MASKED_COLOUR)
    mesh = ax.pcolormesh(x, y, z, shading="nearest", cmap=cmap, vmin=vmin, vmax=vmax)
    fig.colorbar(mesh, ax=ax, label=label)
    _axes_xy(ax)


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


# --------------------------------------------------------------------------- trajectories
def plot_trajectory(proj_file: str, dir_file: str, *, fmt: str = "pdf", dpi: int = DPI,
                    show: bool = False) -> str:
    """The projected optimization path (REFERENCE.md 9.3): ``proj_file + '.' + fmt``.

    Args:
        proj_file: projection file (``proj_xcoord``, ``proj_ycoord``; optional ``epochs``).
        dir_file: its direction file; with ``explained_variance_ratio_`` the axes show the
            share of variance of each PC. ``""``: plain axis labels.
        fmt, dpi, show: as :func:`plot_1d_loss_err`.

    Returns:
        The path written.

    Raises:
        UsageError: a missing or wrong file.
    """
    _check_output(fmt, dpi)
    proj = h5_util.read_projection_file(proj_file)
    ratio = _pc_variance(dir_file)
    with _figures(show) as figs:
        fig = figs.new()
        ax = fig.add_subplot()
        ax.plot(proj.xcoord, proj.ycoord, marker=".")
        _annotate_ends(ax, proj)
        _label_pcs(ax, ratio)
        ax.tick_params(labelsize="x-large")
        return _save(fig, proj_file, fmt=fmt, dpi=dpi)


def plot_contour_trajectory(surf_file: str, dir_file: str, proj_file: str, *, surf_name: str = "train_loss",
                            vmin: float = 0.1, vmax: float = 10, vlevel: float = 0.5,
                            decay_epochs: Sequence[int] = (), fmt: str = "pdf", dpi: int = DPI,
                            show: bool = False) -> str:
    """Contours of the surface with the trajectory on top (REFERENCE.md 9.4).

    Contour lines at ``arange(vmin, vmax, vlevel)`` and at 10, 100, ..., 1e8 (rings of high
    loss), the projected path, PC variance on the axes, and the points of ``decay_epochs``
    (learning-rate decays) marked in red when the projection file records its epochs.

    Args:
        surf_file: a 2D surface file computed on the PCA directions.
        dir_file: the PCA direction file (``""``: the surface file's ``dir_file`` if it exists).
        proj_file: the projection file.
        surf_name, vmin, vmax, vlevel: as :func:`plot_2d_contour`.
        decay_epochs: epochs to mark, e.g. (150, 225, 275).
        fmt, dpi, show: as :func:`plot_1d_loss_err`.

    Returns:
        ``proj_file + '_' + surf_name + '_2dcontour_proj.' + fmt``.

    Raises:
        UsageError: missing or wrong files, unknown ``surf_name``, bad levels.
    """
    _check_output(fmt, dpi)
    _check_levels(vmin, vmax, vlevel)
    surface = _read_surface(surf_file, dims=2)
    z = _masked(surface, surf_name)
    proj = h5_util.read_projection_file(proj_file)
    if not dir_file and surface.dir_file and os.path.isfile(surface.dir_file):
        dir_file = surface.dir_file
    ratio = _pc_variance(dir_file)
    x, y = surface.xcoordinates, surface.ycoordinates
    with _figures(show) as figs:
        fig = figs.new()
        ax = fig.add_subplot()
        _contour_lines(ax, x, y, z, _contour_levels(z, vmin, vmax, vlevel, surf_name), fontsize=6)
        high = HIGH_LEVELS[(HIGH_LEVELS > z.min()) & (HIGH_LEVELS < z.max())]
        if len(high):
            ax.clabel(ax.contour(x, y, z, levels=high), inline=True, fontsize=6)
        ax.plot(proj.xcoord, proj.ycoord, marker=".")
        _mark_epochs(ax, proj, decay_epochs)
        _label_pcs(ax, ratio)
        ax.tick_params(labelsize="x-large")
        return _save(fig, f"{proj_file}_{surf_name}_2dcontour_proj", fmt=fmt, dpi=dpi)


def _annotate_ends(ax, proj: h5_util.ProjectionFile) -> None:
    epochs = _epochs(proj)
    if epochs is None or not len(epochs):
        return
    for i in {0, len(epochs) - 1}:
        ax.annotate(f"epoch {epochs[i]}", (proj.xcoord[i], proj.ycoord[i]), textcoords="offset points",
                    xytext=(4, 4), fontsize="small")


def _mark_epochs(ax, proj: h5_util.ProjectionFile, decay_epochs: Sequence[int]) -> None:
    if not len(decay_epochs):
        return
    epochs = _epochs(proj)
    if epochs is None:
        _warn(f"{proj.path} records no epochs (attribute 'epochs'); --decay_epochs not marked")
        return
    absent = [e for e in decay_epochs if e not in epochs]
    if absent:
        _warn(f"decay epoch(s) {', '.join(map(str, absent))} are not among the projected checkpoints "
              f"(epochs {epochs[0]}..{epochs[-1]}); not marked")
    for e in decay_epochs:
        if e in epochs:
            i = epochs.index(e)
            ax.plot(proj.xcoord[i], proj.ycoord[i], "o", color="red", markersize=6, zorder=3)
            ax.annotate(f"lr decay (epoch {e})", (proj.xcoord[i], proj.ycoord[i]), color="red",
                        textcoords="offset points", xytext=(5, -10), fontsize="small")


# --------------------------------------------------------------------------- Hessian
def plot_eig_ratio(surf_file: str, *, fmt: str = "pdf", dpi: int = DPI, show: bool = False) -> list[str]:
    """|min_eig / max_eig| and min_eig / max_eig of a surface file (REFERENCE.md 9.5).

    2D: heat maps ``_min_eig_max_eig_abs_ratio_heat_sns`` (colour limits 0 and 0.5, viridis)
    and ``_min_eig_max_eig_ratio_heat_sns`` (no limits). 1D: ``_1d_eig_abs_ratio`` (y from 0
    to 1) and ``_1d_eig_ratio``, each in its own figure. Points not computed, NaN/inf, or with
    ``max_eig == 0`` are masked.

    Returns:
        The two paths written.

    Raises:
        UsageError: missing or wrong file, no eigenvalues, none computed.
    """
    _check_output(fmt, dpi)
    surface = _read_surface(surf_file)
    missing = [k for k in ("max_eig", "min_eig") if k not in surface.arrays]
    if missing:
        raise UsageError(f"{surf_file} has no {' or '.join(missing)} (computed by plot_hessian_eigen.py); "
                         f"it has: {', '.join(surface_stats.available_metrics(surface)) or 'no arrays'}")
    done = surface.done_mask(h5_util.EIG)
    hi, lo = surface.arrays["max_eig"], surface.arrays["min_eig"]
    valid = done & np.isfinite(hi) & np.isfinite(lo) & (hi != 0)
    if not valid.any():
        raise UsageError(f"{surf_file}: no computed eigenvalue pair yet ({int(done.sum())}/{done.size} points)")
    ratio = np.ma.masked_array(lo / np.where(valid, hi, 1.0), mask=~valid)
    two_d = surface.ycoordinates is not None
    if two_d and min(surface.shape) < 2:
        raise UsageError(f"{surf_file}: 2D figures need at least 2 points on each axis")
    x, y = surface.xcoordinates, surface.ycoordinates
    paths = []
    with _figures(show) as figs:
        for values, tag, limits in ((np.ma.abs(ratio), "abs_ratio", (0, 0.5)), (ratio, "ratio", (None, None))):
            fig = figs.new()
            if two_d:
                _heat_map(fig, x, y, values, vmin=limits[0], vmax=limits[1], label=f"min_eig / max_eig ({tag})")
                name = f"{surf_file}_min_eig_max_eig_{tag}_heat_sns"
            else:
                ax = fig.add_subplot()
                ax.plot(x, values.filled(np.nan), "b-", linewidth=1)
                if tag == "abs_ratio":
                    ax.set_ylim(0, 1)
                _finish_1d(ax, _xlim(x, None, None), ylabel="|min_eig / max_eig|" if tag == "abs_ratio"
                           else "min_eig / max_eig")
                name = f"{surf_file}_1d_eig_{tag}"
            paths.append(_save(fig, name, fmt=fmt, dpi=dpi))
    return paths


def _plot_hessian_centre(surf_file: str, *, fmt: str, dpi: int, show: bool) -> list[str]:
    """The spectral density of the Hessian at the centre (stochastic Lanczos quadrature, log
    scale) with the top-k eigenvalues marked and the trace estimate in the title, from the
    ``hessian_centre`` group written by plot_hessian_eigen.py. Saved as
    ``{surf_file}_hessian_density``; nothing (an empty list) if the file has no such results.
    The file and the output options are checked by :func:`plot_eig_ratio` first.
    """
    found = h5_util.read_surface_group(surf_file, h5_util.HESSIAN_CENTRE)
    if found is None or not ({"density", "top_eigenvalues"} & set(found[0])):
        return []
    arrays, attrs = found
    with _figures(show) as figs:
        fig = figs.new()
        ax = fig.add_subplot()
        marks = arrays.get("top_eigenvalues", np.array([]))
        if "density" in arrays:  # smoothed when computed (hessian.SpectralDensity.density)
            ax.semilogy(arrays["density_grid"], np.maximum(arrays["density"], 1e-12), "b-", linewidth=1,
                        label="spectral density (SLQ)")
            ax.set_ylabel("density")
        for k, value in enumerate(marks):
            ax.axvline(value, color="r", linestyle="--", linewidth=0.8, label="top-k eigenvalues" if k == 0 else None)
        ax.set_xlabel("eigenvalue of the Hessian (mean loss)")
        if "trace" in attrs:
            ax.set_title(f"trace {attrs['trace']:.4g} ± {attrs['trace_stderr']:.2g}")
        ax.legend(loc="upper right")
        return [_save(fig, f"{surf_file}_hessian_density", fmt=fmt, dpi=dpi)]


def plot_hessian_figures(surf_file: str, *, fmt: str = "pdf", dpi: int = DPI, show: bool = False) -> list[str]:
    """Every figure of plot_hessian_eigen.py's results: :func:`plot_eig_ratio`, then the
    spectral density at the centre with the top-k eigenvalues, if stored."""
    return (plot_eig_ratio(surf_file, fmt=fmt, dpi=dpi, show=show)
            + _plot_hessian_centre(surf_file, fmt=fmt, dpi=dpi, show=show))


# --------------------------------------------------------------------------- after a run
def plot_surface_figures(surf_file: str, *, surf_name: str = "train_loss", vmin: float = 0.1, vmax: float = 10,
                         vlevel: float = 0.5, loss_max: float = 5, log: bool = False, proj_file: str = "",
                         dir_file: str = "", fmt: str = "pdf", show: bool = False, dpi: int = DPI) -> list[str]:
    """What ``plot_surface.py --plot`` draws after computing (call it on the writer process only).

    A 1D file gets the 1D figures (:func:`plot_1d_loss_err`, with ``loss_max`` and ``log``); a
    2D file the contour, filled contour, heat map and 3D surface of ``surf_name``
    (:func:`plot_2d_contour`), or, with ``proj_file``, the contours with the trajectory
    (:func:`plot_contour_trajectory`; ``dir_file`` gives the PC variance on the axes). A 2D
    grid with a single point on an axis gets a note and no figure.

    Returns:
        The paths written.

    Raises:
        UsageError: as the functions above.
    """
    surface = _read_surface(surf_file)
    if surface.ycoordinates is None:
        return plot_1d_loss_err(surf_file, loss_max=loss_max, log=log, fmt=fmt, dpi=dpi, show=show)
    if min(surface.shape) < 2:
        _note(f"{surf_file}: a grid with one point on an axis has no 2D figures")
        return []
    if proj_file:
        return [plot_contour_trajectory(surf_file, dir_file, proj_file, surf_name=surf_name, vmin=vmin,
                                        vmax=vmax, vlevel=vlevel, fmt=fmt, dpi=dpi, show=show)]
    return plot_2d_contour(surf_file, surf_name=surf_name, vmin=vmin, vmax=vmax, vlevel=vlevel,
                           fmt=fmt, dpi=dpi, show=show)

