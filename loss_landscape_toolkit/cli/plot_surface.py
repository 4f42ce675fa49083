"""Loss surface of a network along one or two directions, written to HDF5.

    python plot_surface.py --model resnet56 --model_file m.t7 --x=-1:1:51 --y=-1:1:51
    mpirun -n 4 python plot_surface.py --cuda --model resnet56 --model_file m.t7 --x=-1:1:51 --y=-1:1:51

Runs on one process or many (MPI is detected under mpirun/srun); rerunning the same command
resumes an interrupted run. See README.md for every flag and the output files.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from . import _common as cli
from . import job as cli_job
from .. import plotting
from ..errors import reports_usage_errors
from ..h5io import TEST, TRAIN
from ..surface import surface_task

PROG = "plot_surface.py"


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cli.add_parallel_args(parser)
    cli.add_data_args(parser)
    cli.add_model_args(parser)
    cli.add_direction_args(parser)
    g = parser.add_argument_group("plotting")
    g.add_argument("--proj_file", default="", help="projection file of a trajectory, drawn on the contours")
    g.add_argument("--loss_max", type=float, default=5, help="upper limit of 1D loss plots")
    g.add_argument("--vmax", type=float, default=10, help="highest contour level")
    g.add_argument("--vmin", type=float, default=0.1, help="lowest contour level")
    g.add_argument("--vlevel", type=float, default=0.5, help="contour spacing")
    g.add_argument("--show", action="store_true", help="show the figures after saving them")
    g.add_argument("--log", action="store_true", help="log-scale loss in 1D plots")
    g.add_argument("--plot", action="store_true", help="plot after computing")
    plotting.add_output_args(parser, show=False)
    cli.add_run_args(parser)
    return parser


@reports_usage_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args, world = cli.parse_args_and_world(build_parser(), argv)
    job = cli_job.prepare_job(args, world)
    xcoords, ycoords = job.coordinates()

    def task():
        return surface_task(model=job.model, directions=job.directions.directions,
                            dir_type=args.dir_type, xcoordinates=xcoords, ycoordinates=ycoords,
                            evalsets=job.evalsets, loss_name=args.loss_name,
                            channels_last=args.channels_last, compile=args.compile, bf16=args.bf16,
                            points_per_forward=args.points_per_forward)

    groups = [TRAIN, TEST] if args.eval_test else [TRAIN]
    result = cli_job.run_job(args, world, job, groups=groups, task=task, desc="loss surface")
    if not world.is_root:
        return 0
    if result is not None:
        cli_job.report(job, result[0], world, result[1], groups)
    if args.plot and not args.estimate and (args.of is None or args.merge):  # the whole surface only
        figures = plotting.plot_surface_figures(
            job.surf_file, surf_name="train_loss", vmin=args.vmin, vmax=args.vmax, vlevel=args.vlevel,
            loss_max=args.loss_max, log=args.log, proj_file=args.proj_file, dir_file=job.dir_file,
            fmt=args.format, dpi=args.dpi, show=args.show)
        print("figures:\n" + "\n".join(f"  {path}" for path in figures), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
