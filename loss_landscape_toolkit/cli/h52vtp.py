"""Export a 2D surface to ParaView (.vtp) and, with --obj, to a Wavefront .obj mesh.

    python h52vtp.py -f SURFACE.h5 --surf_name train_loss --zmax 10 --log
    python h52vtp.py -f SURFACE.h5 --interp 200 --obj

Writes ``{surf_file}_{surf_name}[_zmax={zmax}][_log].vtp`` (and ``.obj``) next to the surface
file: one point per grid point (or per resampled point), (nx - 1) * (ny - 1) quads, any grid.
Heights: resampled (--interp), clipped (--zmax), then ln(z + 0.1) (--log), as the reference.
In ParaView: open the .vtp, click the eye icon, raise Transform > Scale z if the surface looks
like needles, color by zvalue.
"""
from __future__ import annotations

import argparse
import math
from typing import Sequence

from .. import h5io, mesh
from .._naming import mesh_name
from ..errors import RangeError, UsageError
from ..stats import get_metric
from . import args as cli_args

PROG = "h52vtp.py"


def build_parser() -> argparse.ArgumentParser:
    # the reference's flags; --obj is new
    parser = cli_args.ArgumentParser(PROG, __doc__.split("\n\n")[0])
    parser.add_argument("--surf_file", "-f", default="", help="2D surface file")
    parser.add_argument("--surf_name", default="train_loss",
                        help="train_loss | test_loss | train_acc | test_acc | train_err | any array of the file")
    parser.add_argument("--zmax", type=float, default=-1, help="clip heights above this (<= 0: no clipping)")
    parser.add_argument("--interp", type=int, default=-1,
                        help="resample on N x N points with a cubic spline (<= 0: off; the reference suggests 1000)")
    parser.add_argument("--log", action="store_true", help="heights ln(z + 0.1)")
    parser.add_argument("--obj", action="store_true", help="also write a Wavefront .obj mesh")
    return parser


def check_flags(args: argparse.Namespace) -> None:
    """Refuse a --zmax that is not a number and an --interp that is too small or cannot fit in memory.

    Raises:
        RangeError: before any file is read.
    """
    if math.isnan(args.zmax) or args.zmax == math.inf:
        raise RangeError(f"--zmax must be a finite height to clip at (or <= 0 for no clipping), got {args.zmax}")
    if args.interp <= 0:
        return
    if args.interp < 2:
        raise RangeError(f"--interp must be at least 2 points per axis (the reference suggests 1000), "
                         f"got {args.interp}")
    most = math.isqrt(cli_args.physical_memory() // mesh.BYTES_PER_POINT)
    cli_args.check_memory(f"--interp {args.interp} is {cli_args.format_count(args.interp ** 2)} mesh points: "
                          f"resampling and exporting them", mesh.export_bytes(args.interp ** 2),
                          fix=f"use a smaller --interp (at most {most} here; the reference suggests 1000)")


@cli_args.reports_usage_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_flags(args)
    if not args.surf_file:
        raise UsageError("no surface file: pass it with --surf_file/-f")
    surface = h5io.read_surface_file(args.surf_file)
    if surface.ycoordinates is None:
        raise UsageError(f"{args.surf_file} is a 1D surface file; h52vtp.py exports 2D surfaces")
    metric = get_metric(surface, args.surf_name)
    zmax = args.zmax if args.zmax > 0 else None
    x, y, z = mesh.height_field(surface.xcoordinates, surface.ycoordinates, metric.values, zmax=zmax,
                                       log=args.log, interp=args.interp if args.interp > 0 else None)
    built = mesh.build_mesh(x, y, z)
    if not len(built.quads):
        raise UsageError(f"{args.surf_file}: no grid cell of {args.surf_name} has 4 computed finite corners; "
                         f"nothing to export")
    outputs = [".vtp"] + ([".obj"] if args.obj else [])
    for suffix in outputs:
        path = mesh_name(args.surf_file, args.surf_name, zmax=zmax, log=args.log, suffix=suffix)
        (mesh.write_vtp if suffix == ".vtp" else mesh.write_obj)(path, built)
        print(path)
    dropped = z.size - len(built.points)
    print(f"{len(built.points)} points, {len(built.quads)} quads"
          + (f"; {dropped} NaN/inf/unfinished point(s) left out with their quads" if dropped else ""))
    return 0

