"""Every figure of the toolkit, drawn from surface and projection files already read into memory.

Figures are written next to their input file, with the reference code's names plus the suffix of
``fmt`` (pdf, png or svg): 1D curves (:mod:`.curves`), 2D contours, heat maps and 3D surfaces
(:mod:`.contours`), trajectories (:mod:`.trajectory`) and Hessian ratio maps and spectra
(:mod:`.hessian`). Each function takes the loaded file (``h5io.read_surface_file``), so a program
reads a file once for all its figures. Values that are not computed, NaN or inf are masked.
"""
from __future__ import annotations

import numpy as np

from .._options import DPI
from ..h5io import ProjectionFile, SurfaceFile
from ._figures import note
from .contours import plot_2d_contour
from .curves import plot_1d_loss_err, plot_1d_loss_err_repeat
from .hessian import plot_eig_ratio, plot_hessian_density, plot_hessian_figures
from .trajectory import pc_variance, plot_contour_trajectory, plot_trajectory

__all__ = [
    "pc_variance",
    "plot_1d_loss_err",
    "plot_1d_loss_err_repeat",
    "plot_2d_contour",
    "plot_contour_trajectory",
    "plot_eig_ratio",
    "plot_hessian_density",
    "plot_hessian_figures",
    "plot_surface_figures",
    "plot_trajectory",
]


def plot_surface_figures(surface: SurfaceFile, *, surf_name: str = "train_loss", vmin: float | None = None,
                         vmax: float | None = None, vlevel: float | None = None, loss_max: float = 5,
                         log: bool = False, proj: ProjectionFile | None = None, pc_variance: np.ndarray | None = None,
                         fmt: str = "pdf", show: bool = False, dpi: int = DPI) -> list[str]:
    """What ``plot_surface.py --plot`` draws after computing (call it on the writer process only).

    A 1D file gets the 1D figures (:func:`plot_1d_loss_err`, with ``loss_max`` and ``log``); a
    2D file the contour, filled contour, heat map and 3D surface of ``surf_name``
    (:func:`plot_2d_contour`; levels from the data unless ``vmin``/``vmax``/``vlevel`` are
    given), or, with a projection ``proj``, the contours with the trajectory
    (:func:`plot_contour_trajectory`; ``pc_variance`` on the axes). A 2D grid with a single
    point on an axis gets a note and no figure.

    Returns:
        The paths written.

    Raises:
        UsageError: as the functions above.
    """
    if surface.ycoordinates is None:
        return plot_1d_loss_err(surface, loss_max=loss_max, log=log, fmt=fmt, dpi=dpi, show=show)
    if min(surface.shape) < 2:
        note(f"{surface.path}: a grid with one point on an axis has no 2D figures")
        return []
    levels = dict(surf_name=surf_name, vmin=vmin, vmax=vmax, vlevel=vlevel, fmt=fmt, dpi=dpi, show=show)
    if proj is not None:
        return [plot_contour_trajectory(surface, proj, pc_variance=pc_variance, **levels)]
    return plot_2d_contour(surface, **levels)
