"""Re-plot 2D surface files: contours, filled contours, heat map, 3D surface, trajectories.

    python plot_2D.py -f SURFACE.h5                      # levels from the data
    python plot_2D.py -f SURFACE.h5 --surf_name train_loss --vmin 0.1 --vmax 10 --vlevel 0.5
    python plot_2D.py -f SURFACE.h5 --dir_file directions.h5 --proj_file directions.h5_proj_cos.h5 \
        --decay_epochs 150 225 275
    python plot_2D.py --dir_file directions.h5 --proj_file directions.h5_proj_cos.h5

With a surface file: the four figures ``_{surf_name}_2dcontour``, ``_2dcontourf``,
``_2dheat``, ``_3dsurface`` next to it, then the comparable numbers of each loss array. With a
projection file too: the contours with the trajectory (``{proj_file}_{surf_name}_2dcontour_proj``);
with a projection file only: the trajectory (``{proj_file}.pdf``). Contour levels come from the
data (error/accuracy maps: 0-100) unless any of --vmin/--vmax/--vlevel is given: then the
reference's ``arange(vmin, vmax, vlevel)``, with 0.1, 10, 0.5 for the flags left out.
"""
from __future__ import annotations

import argparse
import math
import os
from typing import Sequence

import numpy as np

from .. import h5io, plotting, stats
from ..errors import RangeError, UsageError
from . import args as cli_args

PROG = "plot_2D.py"


def build_parser() -> argparse.ArgumentParser:
    parser = cli_args.ArgumentParser(PROG, __doc__.split("\n\n")[0])
    parser.add_argument("--surf_file", "-f", default="", help="2D surface file")
    parser.add_argument("--dir_file", default="", help="direction file (PC variance of PCA directions)")
    parser.add_argument("--proj_file", default="", help="projection file of a trajectory (plot_trajectory.py)")
    parser.add_argument("--surf_name", default="train_loss",
                        help="array to plot: train_loss, test_loss, train_acc, train_err (100 - acc), ...")
    cli_args.add_level_args(parser)
    parser.add_argument("--zlim", type=float, default=10, help="accepted for compatibility; unused (see --vmax)")
    parser.add_argument("--log", action="store_true", help="log10 heights in the 3D surface")
    parser.add_argument("--decay_epochs", type=int, nargs="*", default=[],
                        help="epochs of learning-rate decays to mark on the trajectory, e.g. 150 225 275")
    g = parser.add_argument_group("comparable numbers")
    g.add_argument("--save_stats", action="store_true",
                   help="store the printed numbers as attributes stats_<array> in the surface file")
    g.add_argument("--level", type=float, default=None,
                   help="level of the 'fraction of the grid under' number (default: centre + 0.1)")
    cli_args.add_eig_arg(parser)
    cli_args.add_output_args(parser)
    return parser


def _pc_variance(dir_file: str) -> np.ndarray | None:
    """The PC variance of a PCA direction file (its PCA arrays only are read), or None."""
    return plotting.pc_variance(h5io.read_direction_extras(dir_file)) if dir_file else None


def check_flags(args: argparse.Namespace) -> None:
    """Refuse a --level that is not finite and --log with --vmax <= 0, before any file is read
    (--vmin/--vmax/--vlevel and --dpi are checked by the parser).

    Raises:
        RangeError: naming the flag to change.
    """
    if args.level is not None and not math.isfinite(args.level):
        raise RangeError(f"--level must be a finite number (or left out: centre + 0.1), got {args.level}")
    if args.log and args.vmax is not None and not args.vmax > 0:
        raise RangeError(f"--log draws log10 of the 3D surface clipped at --vmax, so --vmax must be > 0, "
                         f"got {args.vmax:g}")


@cli_args.reports_usage_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_flags(args)
    output = dict(fmt=args.format, dpi=args.dpi, show=args.show)
    levels = dict(surf_name=args.surf_name, vmin=args.vmin, vmax=args.vmax, vlevel=args.vlevel)
    if args.proj_file:
        proj = h5io.read_projection_file(args.proj_file)
        if not args.surf_file:
            print(plotting.plot_trajectory(proj, pc_variance=_pc_variance(args.dir_file), **output))
            return 0
        surface = h5io.read_surface_file(args.surf_file)
        dir_file = args.dir_file
        if not dir_file and surface.dir_file and os.path.isfile(surface.dir_file):
            dir_file = surface.dir_file
        print(plotting.plot_contour_trajectory(surface, proj, pc_variance=_pc_variance(dir_file),
                                               decay_epochs=args.decay_epochs, **levels, **output))
        return 0
    if not args.surf_file:
        raise UsageError("nothing to plot: pass a surface file with -f (and/or --proj_file for a trajectory)")
    if args.dir_file or args.decay_epochs:
        raise UsageError("--dir_file and --decay_epochs belong to trajectory plots; add --proj_file")
    surface = h5io.read_surface_file(args.surf_file)
    if args.eig:
        for path in plotting.plot_hessian_figures(surface, **output):
            print(path)
        return 0
    for path in plotting.plot_2d_contour(surface, log=args.log, **levels, **output):
        print(path)
    print(stats.summarize(surface, save=args.save_stats, level=args.level))
    return 0
