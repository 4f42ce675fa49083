"""Loss surface of a network along one or two directions, written to HDF5.

    python plot_surface.py --model resnet56 --model_file m.t7 --x=-1:1:51 --y=-1:1:51
    mpirun -n 4 python plot_surface.py --cuda --model resnet56 --model_file m.t7 --x=-1:1:51 --y=-1:1:51

Runs on one process or many (MPI is detected under mpirun/srun); rerunning the same command
resumes an interrupted run. See README.md for every flag and the output files.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from .. import h5io, plotting
from ..surface import surface_groups, surface_task
from . import args as cli_args
from .job import parse_args_and_world, prepare_job
from .modes import is_whole_surface, report, run_job

PROG = "plot_surface.py"


def build_parser() -> argparse.ArgumentParser:
    parser = cli_args.ArgumentParser(PROG, __doc__.split("\n\n")[0])
    cli_args.add_parallel_args(parser)
    cli_args.add_data_args(parser)
    cli_args.add_model_args(parser)
    cli_args.add_direction_args(parser)
    g = parser.add_argument_group("plotting")
    g.add_argument("--proj_file", default="", help="projection file of a trajectory, drawn on the contours")
    cli_args.checked(g.add_argument("--loss_max", type=float, default=5, help="upper limit of 1D loss plots"),
                     cli_args.check_loss_max)
    cli_args.add_level_args(g)
    g.add_argument("--log", action="store_true", help="log-scale loss in 1D plots")
    cli_args.add_output_args(parser, plot=True)
    cli_args.add_run_args(parser)
    return parser


@cli_args.reports_usage_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args, world = parse_args_and_world(build_parser(), argv)
    job = prepare_job(args, world)
    xcoords, ycoords = job.coordinates()

    def task():
        return surface_task(model=job.model, directions=job.directions.directions,
                            dir_type=args.dir_type, xcoordinates=xcoords, ycoordinates=ycoords,
                            evalsets=job.evalsets, loss_name=args.loss_name,
                            channels_last=args.channels_last, compile=args.compile, bf16=args.bf16,
                            fold_bn=args.fold_bn,
                            points_per_forward=args.points_per_forward)

    groups = surface_groups(job.evalsets, args.loss_name)  # *_acc where the loss has an accuracy
    result = run_job(args, world, job, groups=groups, task=task, desc="loss surface")
    if not world.is_root:
        return 0
    surface = None
    if result is not None:
        grid_stats, filled = result
        surface = report(job, grid_stats, world, filled, groups)
    if args.plot and is_whole_surface(args):
        if surface is None:  # --merge: the merged file
            surface = h5io.read_surface_file(job.surf_file)
        proj = h5io.read_projection_file(args.proj_file) if args.proj_file else None
        figures = plotting.plot_surface_figures(
            surface, surf_name="train_loss", vmin=args.vmin, vmax=args.vmax, vlevel=args.vlevel,
            loss_max=args.loss_max, log=args.log, proj=proj,
            pc_variance=plotting.pc_variance(job.directions.extras), fmt=args.format, dpi=args.dpi,
            show=args.show)
        print("figures:\n" + "\n".join(f"  {path}" for path in figures), flush=True)
    return 0
