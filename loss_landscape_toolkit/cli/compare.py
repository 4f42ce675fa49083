"""Print the comparable numbers of several surface files side by side, one row per file.

    python compare_surfaces.py -f skip.h5 noskip.h5 --labels resnet20 resnet20_noshort
    python compare_surfaces.py -f a.h5 b.h5 c.h5 --surf_name test_loss

The paper compares minimizers by eye; this table puts the numbers of stats.py beside each other:
the loss at the centre, the width under centre + 0.1 along each axis (``>=``: the interval
reaches the grid edge or an unfinished/NaN point; ``<=``: the grid is too coarse for the basin),
the curvature of the quadratic fit along each axis (``*``: a secant across the basin), the
fraction of a 2D grid under centre + 0.1, and for files with Hessian maps the ratio
|lambda_min/lambda_max| at the centre and its mean over the computed points. Files are numbered
in the table and listed, with their paths, above it; 1D and 2D files may be mixed.
"""
from __future__ import annotations

import argparse
import math
from typing import Sequence

import numpy as np

from .. import h5io, stats
from ..errors import RangeError, UsageError
from . import args as cli_args

PROG = "compare_surfaces.py"
MISSING = "-"  # a cell with no number: not 2D, no Hessian map, centre not computed
HEADERS = ("#", "label", "done", "centre", "width x", "width y", "d2/dx2", "d2/dy2", "under level",
           "eig done", "|min/max| centre", "|min/max| mean")
WIDTHS, CURVATURES = ("width x", "width y"), ("d2/dx2", "d2/dy2")
SECANT = " *"  # after a curvature: the fit window leaves the basin
NOTES = {
    ">=": ">= the interval reaches the grid edge or an unfinished/NaN point: a lower bound",
    "<=": "<= the basin spans under 4 grid steps: an upper bound (the grid points above the level); "
          "rerun on a narrower range",
    SECANT: "* the fit window leaves the basin: a secant across it, not the curvature at the bottom",
}


def build_parser() -> argparse.ArgumentParser:
    parser = cli_args.ArgumentParser(PROG, __doc__.split("\n\n")[0])
    parser.add_argument("--surf_file", "-f", nargs="+", default=[], help="surface files (1D or 2D), one row each")
    parser.add_argument("--labels", nargs="+", default=[],
                        help="a short name per file, in the same order (default: the file's name)")
    parser.add_argument("--surf_name", default="train_loss",
                        help="the loss array to compare: train_loss | test_loss | any array of the files")
    cli_args.checked(parser.add_argument(
        "--delta", type=float, default=0.1,
        help="widths and the fraction are taken under centre + delta (the paper's contour is 0.1)"), _check_delta)
    return parser


def _check_delta(args: argparse.Namespace) -> None:
    if not (math.isfinite(args.delta) and args.delta > 0):
        raise RangeError(f"--delta must be a finite number > 0, got {args.delta}")


def _check_labels(files: Sequence[str], labels: Sequence[str]) -> list[str]:
    """One label per file: the given ones, or the files' names.

    Raises:
        UsageError: no file, or a number of labels other than the number of files.
    """
    if not files:
        raise UsageError("no surface file: pass two or more with -f A.h5 B.h5")
    if labels and len(labels) != len(files):
        raise UsageError(f"{len(labels)} label(s) for {len(files)} file(s): give one --labels entry per file")
    return list(labels) or [path.rsplit("/", 1)[-1] for path in files]


def _width_cell(width: stats.Width) -> str:
    if not width.bounded:
        return f">= {width.width:.3g}"
    if not width.resolved:
        return f"<= {width.upper:.3g}"
    return f"{width.width:.3g}"


def _loss_cells(surface: h5io.SurfaceFile, name: str, delta: float) -> dict[str, str]:
    """The loss columns of one file (empty when the file has no array ``name``)."""
    if name not in stats.available_metrics(surface):
        return {}
    numbers = stats.surface_stats(surface, name, delta=delta)
    cells = {"done": f"{numbers.points_done}/{int(np.prod(surface.shape))}"}
    if numbers.centre_value is None:
        return cells
    cells["centre"] = f"{numbers.centre_value:.4g}"
    for axis, width in numbers.widths.items():
        cells[f"width {axis}"] = _width_cell(width)
    fit = numbers.fit
    if fit is not None:
        secant = "" if fit.resolved else SECANT
        cells["d2/dx2"] = f"{fit.d2x:.4g}{secant}"
        if fit.d2y is not None:
            cells["d2/dy2"] = f"{fit.d2y:.4g}{secant}"
    if numbers.fraction_under is not None:
        cells["under level"] = f"{100 * numbers.fraction_under:.1f}%"
    return cells


def _eig_cells(surface: h5io.SurfaceFile) -> dict[str, str]:
    """|lambda_min / lambda_max| at the centre and its mean over the computed points."""
    if "max_eig" not in surface.arrays or "min_eig" not in surface.arrays:
        return {}
    hi, lo = stats.get_metric(surface, "max_eig").values, stats.get_metric(surface, "min_eig").values
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(lo / hi)  # NaN where not computed
    ok = np.isfinite(ratio)
    cells = {"eig done": f"{int(ok.sum())}/{ratio.size}"}
    centre = stats.centre_index(surface)
    if ok[centre]:
        cells["|min/max| centre"] = f"{ratio[centre]:.3g}"
    if ok.any():
        cells["|min/max| mean"] = f"{ratio[ok].mean():.3g}"
    return cells


def compare_row(surface: h5io.SurfaceFile, *, surf_name: str, delta: float) -> dict[str, str]:
    """The cells of one file's row, by column header (columns left out have no number).

    Raises:
        UsageError: the file has neither the array ``surf_name`` nor Hessian maps.
    """
    loss, eig = _loss_cells(surface, surf_name, delta), _eig_cells(surface)
    if not loss and not eig:
        raise UsageError(
            f"{surface.path} has no '{surf_name}' and no Hessian maps; available: "
            f"{', '.join(stats.available_metrics(surface)) or 'none'} (choose one with --surf_name)")
    return {**loss, **eig}


def format_table(rows: Sequence[dict[str, str]]) -> str:
    """Columns aligned, only those with a number in some row (``#`` and ``label`` always)."""
    headers = [h for h in HEADERS if h in ("#", "label") or any(h in row for row in rows)]
    table = [headers] + [[row.get(h, MISSING) for h in headers] for row in rows]
    sizes = [max(len(line[i]) for line in table) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(size) for cell, size in zip(line, sizes)).rstrip() for line in table)


def _notes(rows: Sequence[dict[str, str]], surf_name: str, delta: float) -> list[str]:
    """What the level is, and what each bound marker that appears in the table means."""
    widths = [row[h] for row in rows for h in WIDTHS if h in row]
    curvatures = [row[h] for row in rows for h in CURVATURES if h in row]
    used = {marker for marker in (">=", "<=") if any(w.startswith(marker) for w in widths)}
    used |= {SECANT} if any(c.endswith(SECANT) for c in curvatures) else set()
    lines = [f"widths and the fraction under the level: {surf_name} <= centre + {delta:g}"] if widths else []
    return lines + [text for marker, text in NOTES.items() if marker in used]


@cli_args.reports_usage_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    labels = _check_labels(args.surf_file, args.labels)
    surfaces = [h5io.read_surface_file(path) for path in args.surf_file]
    rows = []
    for number, (surface, label) in enumerate(zip(surfaces, labels), start=1):
        row = compare_row(surface, surf_name=args.surf_name, delta=args.delta)
        rows.append({"#": str(number), "label": label, **row})
    for number, path in enumerate(args.surf_file, start=1):
        print(f"#{number}: {path}")
    print(format_table(rows))
    for line in _notes(rows, args.surf_name, args.delta):
        print(line)
    return 0
