"""Figures of the Hessian results: maps of min_eig / max_eig, and the spectral density at the centre.

A negative ratio marks non-convexity; the paper reads convexity off |min_eig / max_eig| (small is
nearly convex). Points not computed, NaN/inf (where the loss or its Hessian is not finite), or with
``max_eig == 0`` are masked, as in the loss figures; a centre whose Hessian is not finite has no
density figure.
"""
from __future__ import annotations

import numpy as np

from .._naming import density_figure, eig_ratio_figure
from .._options import DPI
from ..errors import UsageError
from ..h5io import EIG, HESSIAN_CENTRE, SurfaceFile
from ..stats import available_metrics
from ._figures import check_output, figures, finish_1d, heat_map, save, xlim


def plot_eig_ratio(surface: SurfaceFile, *, fmt: str = "pdf", dpi: int = DPI, show: bool = False) -> list[str]:
    """|min_eig / max_eig| and min_eig / max_eig of a surface file.

    2D: heat maps ``_min_eig_max_eig_abs_ratio_heat_sns`` (colour limits 0 and 0.5, viridis)
    and ``_min_eig_max_eig_ratio_heat_sns`` (no limits). 1D: ``_1d_eig_abs_ratio`` (y from 0
    to 1) and ``_1d_eig_ratio``, each in its own figure.

    Returns:
        The two paths written.

    Raises:
        UsageError: no eigenvalues in the file, or none computed.
    """
    check_output(fmt, dpi)
    missing = [k for k in ("max_eig", "min_eig") if k not in surface.arrays]
    if missing:
        raise UsageError(f"{surface.path} has no {' or '.join(missing)} (computed by plot_hessian_eigen.py); "
                         f"it has: {', '.join(available_metrics(surface)) or 'no arrays'}")
    done = surface.done_mask(EIG)
    hi, lo = surface.arrays["max_eig"], surface.arrays["min_eig"]
    valid = done & np.isfinite(hi) & np.isfinite(lo) & (hi != 0)
    if not valid.any():
        if done.any():
            raise UsageError(f"{surface.path}: no finite eigenvalue pair to plot: all {int(done.sum())} computed "
                             f"point(s) are NaN/inf or have max_eig 0 ({done.size} points in the grid)")
        raise UsageError(f"{surface.path}: no computed eigenvalue pair yet ({int(done.sum())}/{done.size} points)")
    ratio = np.ma.masked_array(lo / np.where(valid, hi, 1.0), mask=~valid)
    two_d = surface.ycoordinates is not None
    if two_d and min(surface.shape) < 2:
        raise UsageError(f"{surface.path}: 2D figures need at least 2 points on each axis")
    x, y = surface.xcoordinates, surface.ycoordinates
    paths = []
    with figures(show) as figs:
        for values, tag, limits in ((np.ma.abs(ratio), "abs_ratio", (0, 0.5)), (ratio, "ratio", (None, None))):
            fig = figs.new()
            if two_d:
                heat_map(fig, x, y, values, vmin=limits[0], vmax=limits[1], label=f"min_eig / max_eig ({tag})")
            else:
                ax = fig.add_subplot()
                ax.plot(x, values.filled(np.nan), "b-", linewidth=1)
                if tag == "abs_ratio":
                    ax.set_ylim(0, 1)
                finish_1d(ax, xlim(x, None, None), ylabel="|min_eig / max_eig|" if tag == "abs_ratio"
                          else "min_eig / max_eig")
            paths.append(save(fig, eig_ratio_figure(surface.path, tag, two_d=two_d), fmt=fmt, dpi=dpi))
    return paths


def plot_hessian_density(surface: SurfaceFile, *, fmt: str = "pdf", dpi: int = DPI, show: bool = False) -> list[str]:
    """The spectral density of the Hessian at the centre (stochastic Lanczos quadrature, log
    scale) with the top-k eigenvalues marked and the trace estimate in the title, from the
    ``hessian_centre`` group written by plot_hessian_eigen.py. Saved as
    ``{surf_file}_hessian_density``; nothing (an empty list) if the file has no such results, or
    only NaN/inf ones (a centre where the loss is not finite).
    """
    check_output(fmt, dpi)
    found = surface.groups.get(HESSIAN_CENTRE)
    if found is None or found[1].get("finite") is False:
        return []
    arrays, attrs = found
    arrays = {k: v for k, v in arrays.items() if k not in ("density", "top_eigenvalues") or np.isfinite(v).all()}
    if not {"density", "top_eigenvalues"} & set(arrays):
        return []
    with figures(show) as figs:
        fig = figs.new()
        ax = fig.add_subplot()
        marks = arrays.get("top_eigenvalues", np.array([]))
        if "density" in arrays:  # smoothed when computed (SpectralDensity.density)
            ax.semilogy(arrays["density_grid"], np.maximum(arrays["density"], 1e-12), "b-", linewidth=1,
                        label="spectral density (SLQ)")
            ax.set_ylabel("density")
        for k, value in enumerate(marks):
            ax.axvline(value, color="r", linestyle="--", linewidth=0.8, label="top-k eigenvalues" if k == 0 else None)
        ax.set_xlabel("eigenvalue of the Hessian (mean loss)")
        if np.isfinite(attrs.get("trace", np.nan)):
            ax.set_title(f"trace {attrs['trace']:.4g} ± {attrs['trace_stderr']:.2g}")
        ax.legend(loc="upper right")
        return [save(fig, density_figure(surface.path), fmt=fmt, dpi=dpi)]


def plot_hessian_figures(surface: SurfaceFile, *, fmt: str = "pdf", dpi: int = DPI, show: bool = False) -> list[str]:
    """Every figure of plot_hessian_eigen.py's results: :func:`plot_eig_ratio`, then the
    spectral density at the centre with the top-k eigenvalues, if stored."""
    return (plot_eig_ratio(surface, fmt=fmt, dpi=dpi, show=show)
            + plot_hessian_density(surface, fmt=fmt, dpi=dpi, show=show))
