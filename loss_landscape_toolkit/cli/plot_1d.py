"""Re-plot 1D surface files: loss and accuracy along the direction, and several runs overlaid.

    python plot_1D.py -f model_300.t7_weights_xignore=biasbn_xnorm=filter.h5_[-1.0,1.0,51].h5 --log
    python plot_1D.py -f run_a.h5 run_b.h5 run_c.h5
    python plot_1D.py --prefix model_300.t7_weights_xignore=biasbn_xnorm=filter --idx_min 1 --idx_max 5

Figures go next to the surface file with the reference's names (``_1d_loss_acc[_log]``,
``_1d_train_loss[_log]``, ``_1d_train_err``; ``_1d_loss_err_repeat`` for overlays), followed by
the comparable numbers of each loss array (see stats.py).
"""
from __future__ import annotations

import argparse
import math
from typing import Sequence

from .. import h5io, plotting, stats
from .._naming import repeat_files
from ..errors import RangeError, UsageError
from . import args as cli_args

PROG = "plot_1D.py"


def build_parser() -> argparse.ArgumentParser:
    parser = cli_args.ArgumentParser(PROG, __doc__.split("\n\n")[0])
    parser.add_argument("--surf_file", "-f", nargs="+", default=[],
                        help="1D surface file; several files are overlaid on one figure")
    parser.add_argument("--log", action="store_true", help="logarithmic loss axis")
    parser.add_argument("--xmin", type=float, default=-1, help="x-axis lower limit (-1: the grid's minimum)")
    parser.add_argument("--xmax", type=float, default=1, help="x-axis upper limit (1: the grid's maximum)")
    parser.add_argument("--loss_max", type=float, default=5, help="upper limit of the loss axis")
    g = parser.add_argument_group("repeat plot (overlay of runs along directions --idx N)")
    g.add_argument("--prefix", default="",
                   help="direction file name without .h5 and _idx=N: overlays its surface files "
                        "..._idx=N.h5_<range>.h5 (or the reference's PREFIX_N.h5)")
    g.add_argument("--idx_min", type=int, default=1, help="first idx of the repeat plot")
    g.add_argument("--idx_max", type=int, default=10, help="last idx of the repeat plot")
    g = parser.add_argument_group("comparable numbers")
    g.add_argument("--save_stats", action="store_true",
                   help="store the printed numbers as attributes stats_<array> in the surface file")
    cli_args.add_eig_arg(parser)
    cli_args.add_output_args(parser)
    return parser


def check_flags(args: argparse.Namespace) -> None:
    """Refuse axis limits that are not finite or are in the wrong order, before any file is read.

    Raises:
        RangeError: naming the flag and the value to change.
    """
    for flag in ("xmin", "xmax"):
        if not math.isfinite(getattr(args, flag)):
            raise RangeError(f"--{flag} must be a finite number, got {getattr(args, flag)}")
    cli_args.check_loss_max(args)
    if args.xmin != -1 and args.xmax != 1 and not args.xmin < args.xmax:
        raise RangeError(f"--xmin {args.xmin:g} must be smaller than --xmax {args.xmax:g} (-1 and 1 mean "
                         f"the grid's own limits)")


def check_xlim(xmin: float | None, xmax: float | None, surfaces: Sequence[h5io.SurfaceFile]) -> None:
    """Refuse a given --xmin/--xmax that leaves an empty x-axis with the grid's other limit.

    Raises:
        RangeError: e.g. --xmin 2 on a grid that ends at x = 1.
    """
    if (xmin is None and xmax is None) or not surfaces:
        return  # the grid's own limits
    grid_lo = min(float(s.xcoordinates.min()) for s in surfaces)
    grid_hi = max(float(s.xcoordinates.max()) for s in surfaces)
    lo, hi = (grid_lo if xmin is None else xmin), (grid_hi if xmax is None else xmax)
    if not lo < hi:
        given = " ".join(f"--{n} {v:g}" for n, v in (("xmin", xmin), ("xmax", xmax)) if v is not None)
        raise RangeError(f"{given} leaves an empty x-axis from {lo:g} to {hi:g} (the grid spans {grid_lo:g} "
                         f"to {grid_hi:g}); pick limits with xmin < xmax")


@cli_args.reports_usage_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_flags(args)
    # the reference's sentinels: -1 and 1 mean "the grid's own limits"
    xmin = None if args.xmin == -1 else args.xmin
    xmax = None if args.xmax == 1 else args.xmax
    output = dict(xmin=xmin, xmax=xmax, loss_max=args.loss_max, log=args.log, fmt=args.format,
                  dpi=args.dpi, show=args.show)
    if args.prefix or len(args.surf_file) > 1:
        if args.prefix and args.surf_file:
            raise UsageError("give either --prefix or the surface files (-f), not both")
        files = args.surf_file
        if args.prefix:
            files, missing = repeat_files(args.prefix, args.idx_min, args.idx_max)
            if missing:
                print(f"note: --prefix: no surface file for idx {', '.join(map(str, missing))}; "
                      f"overlaying {len(files)} file(s)", flush=True)
        surfaces = [h5io.read_surface_file(path) for path in files]
        check_xlim(xmin, xmax, surfaces)
        print(plotting.plot_1d_loss_err_repeat(surfaces, out_base=args.prefix or files[0], **output))
        return 0
    if not args.surf_file:
        raise UsageError("no surface file: pass -f FILE (or --prefix for the repeat plot)")
    surface = h5io.read_surface_file(args.surf_file[0])
    if args.eig:
        for path in plotting.plot_hessian_figures(surface, fmt=args.format, dpi=args.dpi, show=args.show):
            print(path)
        return 0
    check_xlim(xmin, xmax, [surface])
    for path in plotting.plot_1d_loss_err(surface, **output):
        print(path)
    print(stats.summarize(surface, save=args.save_stats))
    return 0
