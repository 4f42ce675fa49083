"""Loss surface of a network along one or two directions, written to HDF5.

    python plot_surface.py --model resnet56 --model_file m.t7 --x=-1:1:51 --y=-1:1:51
    mpirun -n 4 python plot_surface.py --cuda --model resnet56 --model_file m.t7 --x=-1:1:51 --y=-1:1:51

Runs on one process or many (MPI is detected under mpirun/srun); rerunning the same command
resumes an interrupted run. See README.md for every flag and the output files.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Sequence

from torch import nn

import cli_common as cli
import h5_util
import net_plotter
from errors import SilentExit, UsageError, reports_usage_errors
from grid_runner import GridStats
from mpi_util import World, abort_on_error, detect_world, env_rank
from surface import EvalSet, run_surface, same_model_on_all_ranks, summarize

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
    cli.add_run_args(parser)
    return parser


@dataclass
class Job:
    """Everything a rank needs to compute its share of the surface."""

    model: nn.Module
    evalsets: dict[str, EvalSet]
    dir_file: str
    directions: h5_util.DirectionFile
    surf_file: str
    x: cli.GridRange
    y: cli.GridRange | None


@reports_usage_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        world = detect_world(force_mpi=args.mpi)
    except UsageError:
        if env_rank() != 0:
            raise SilentExit() from None  # the same error is reported by rank 0
        raise
    job = prepare(args, world)
    with abort_on_error(world):
        stats = run_surface(world=world, model=job.model, directions=job.directions.directions,
                            dir_type=args.dir_type, surf_file=job.surf_file,
                            xcoordinates=job.x.coordinates(),
                            ycoordinates=None if job.y is None else job.y.coordinates(),
                            evalsets=job.evalsets, loss_name=args.loss_name,
                            flush_secs=args.flush_secs, progress=not args.no_progress,
                            channels_last=args.channels_last, compile=args.compile)
    if world.is_root:
        report(job, stats, world)
        if args.plot:
            print("--plot: plotting arrives with plot_2D.py / plot_1D.py; the surface file above "
                  "holds everything they need", flush=True)
    return 0


def prepare(args: argparse.Namespace, world: World) -> Job:
    """Set-up on every rank, each step agreed: one rank's bad input stops all ranks."""
    with world.agreed():  # what every rank does on its own
        x = cli.parse_range(args.x, "--x")
        y = None if args.y is None else cli.parse_range(args.y, "--y")
        if args.dir_file and not os.path.isfile(args.dir_file):
            raise h5_util.FileFormatError(f"--dir_file {args.dir_file} does not exist")
        cli.check_model_spec(args.model, [args.model_file, args.model_file2, args.model_file3])
        device = cli.configure_torch(args, world)
        if world.is_root:  # rank 0 alone may download missing data
            evalsets = cli.load_evalsets(args, device=device)
    with world.agreed():
        if not world.is_root:
            evalsets = cli.load_evalsets(args, device=device, download=False)
        num_classes = evalsets["train"].num_classes
        model = cli.load_model(args, num_classes=num_classes, model_file=args.model_file)
        dir_file = cli.direction_file_name(args, two_d=y is not None)
    model_fingerprint = same_model_on_all_ranks(world, model)
    created = False
    with world.agreed():
        if world.is_root and not os.path.exists(dir_file):
            cli.create_directions(args, model, dir_file, two_d=y is not None, world=world,
                                  num_classes=num_classes)
            created = True
    with world.agreed():
        directions = net_plotter.load_directions(dir_file, model, dir_type=args.dir_type,
                                                 ndirections=1 if y is None else 2)
        cli.check_reused_directions(args, directions, model_fingerprint)
        surf_file = cli.surface_file_name(args, dir_file, x, y)
    with world.agreed():
        if world.is_root:
            resumed = setup_surface_file(args, world, surf_file, dir_file, directions, x, y,
                                         model_fingerprint)
            announce(args, world, evalsets, dir_file, created, directions, surf_file, resumed, x, y)
    model = model.to(device)
    if args.ngpu > 1:
        model = nn.DataParallel(model)
    return Job(model, evalsets, dir_file, directions, surf_file, x, y)


def setup_surface_file(args: argparse.Namespace, world: World, surf_file: str, dir_file: str,
                       directions: h5_util.DirectionFile, x: cli.GridRange, y: cli.GridRange | None,
                       model_fingerprint: str) -> bool:
    """Create the surface file, or check that the existing one can be resumed. True if resumed."""
    ycoords = None if y is None else y.coordinates()
    settings = {k: getattr(args, k) for k in cli.RESUME_KEYS}
    if os.path.exists(surf_file):
        surface = h5_util.read_surface_file(surf_file)
        cli.check_resumable(surface, xcoordinates=x.coordinates(), ycoordinates=ycoords,
                            dir_file=dir_file, dir_fingerprint=directions.fingerprint,
                            model_fingerprint=model_fingerprint, settings=settings)
        return True
    folder = os.path.dirname(surf_file)
    if folder and not os.path.isdir(folder):
        raise h5_util.FileFormatError(f"cannot write the surface file {surf_file}: folder {folder} does not exist")
    h5_util.create_surface_file(surf_file, dir_file=dir_file, xcoordinates=x.coordinates(),
                                ycoordinates=ycoords, attrs=cli.provenance(args, world, {
                                    "dir_fingerprint": directions.fingerprint,
                                    "model_fingerprint": model_fingerprint,
                                    "model": args.model, "model_file": args.model_file,
                                    "grid_convention": "Z[iy, ix] = f(xcoordinates[ix], ycoordinates[iy])",
                                }))
    return False


def announce(args: argparse.Namespace, world: World, evalsets: dict[str, EvalSet], dir_file: str,
             created: bool, directions: h5_util.DirectionFile, surf_file: str, resumed: bool,
             x: cli.GridRange, y: cli.GridRange | None) -> None:
    if not args.model_file:
        print(f"note: no --model_file: {args.model} is randomly initialised, so this is the "
              f"landscape of an untrained network", flush=True)
    npoints = x.num * (1 if y is None else y.num)
    grid = f"{x.num} points" if y is None else f"{x.num} x {y.num} = {npoints} points"
    data = "; ".join(e.description for e in evalsets.values())
    lines = [
        f"model: {args.model}" + (f" from {args.model_file}" if args.model_file else " (random init)"),
        f"data: {data}; batch size {args.batch_size}; {world.size} process(es)",
        f"direction file: {dir_file} ({'created' if created else 'reused'})",
        f"surface file: {surf_file} ({'resuming' if resumed else 'created'})",
        f"grid: {grid}",
    ]
    if len(directions.directions) == 2:
        cos = net_plotter.cosine_similarity(*directions.directions)
        lines.append(f"cosine similarity between x-axis and y-axis: {cos:f}")
    print("\n".join(lines), flush=True)


def report(job: Job, stats: GridStats, world: World) -> None:
    per_point = stats.seconds / stats.computed if stats.computed else float("nan")
    ranks = ", ".join(f"rank {r}: {n}" for r, n in enumerate(stats.per_rank)) if world.size > 1 else ""
    print(f"computed {stats.computed} point(s) in {stats.seconds:.1f} s ({per_point:.3g} s/point"
          f"{'; ' + ranks if ranks else ''}); {stats.already_done} were already done", flush=True)
    print(f"direction file: {job.dir_file}\nsurface file: {job.surf_file}", flush=True)
    print(summarize(h5_util.read_surface_file(job.surf_file)), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
