"""Curvature maps: the Hessian's largest and smallest eigenvalues at every point of a grid.

    python plot_hessian_eigen.py --model resnet56 --model_file m.t7 --x=-1:1:21 --y=-1:1:21 --plot
    mpirun -n 4 python plot_hessian_eigen.py --cuda ... --top_k 5 --trace_probes 30 --density_probes 4

max_eig and min_eig go into the same surface file as the losses (same name, same grid); the
maps of |min_eig / max_eig| show where the landscape is convex (paper Fig. 7). Runs on one
process or many and resumes like plot_surface.py. See README.md.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import asdict
from typing import Sequence

from .. import h5io, plotting
from .._files import writer_lock
from .._options import EIGEN_METHODS, PARAM_SETS
from ..errors import FileFormatError, UsageError
from ..h5io import EIG
from ..hessian import maps
from ..hessian.maps import EigenSettings
from . import args as cli_args
from .job import Job, parse_args_and_world, prepare_job
from .modes import is_whole_surface, report, run_job

PROG = "plot_hessian_eigen.py"


def build_parser() -> argparse.ArgumentParser:
    parser = cli_args.ArgumentParser(PROG, __doc__.split("\n\n")[0])
    cli_args.add_parallel_args(parser, speed=False)
    cli_args.add_data_args(parser, test=False)
    cli_args.add_model_args(parser)
    cli_args.add_direction_args(parser, same_dir=False)
    g = parser.add_argument_group("eigenvalues")
    g.add_argument("--tol", type=float, default=1e-3,
                   help="relative tolerance of lambda_max and lambda_min (of the spectral norm)")
    g.add_argument("--maxiter", type=int, default=200, help="cap on Hessian-vector products per point")
    g.add_argument("--eig_method", default="lanczos", choices=EIGEN_METHODS,
                   help="lanczos: both ends from one Krylov space; eigsh: ARPACK; reference: the "
                        "reference code's shift-and-'LM' method")
    g.add_argument("--hessian_params", default="dim>1", choices=PARAM_SETS,
                   help="parameters of the Hessian: weights with dim > 1 (the reference's), or all")
    g.add_argument("--float64", action="store_true", help="Hessian-vector products in float64")
    g.add_argument("--no_warm_start", action="store_true",
                   help="start every point from a random vector instead of the previous point's eigenvectors")
    g = parser.add_argument_group("at the centre point (rank 0, after the grid)")
    g.add_argument("--top_k", type=int, default=0, help="the k largest eigenvalues")
    g.add_argument("--trace_probes", type=int, default=0, help="Hutchinson trace with this many probes")
    g.add_argument("--density_probes", type=int, default=0,
                   help="spectral density by stochastic Lanczos quadrature with this many probes")
    g.add_argument("--density_steps", type=int, default=80, help="Lanczos steps per density probe")
    cli_args.add_output_args(parser, plot=True)
    cli_args.add_run_args(parser)
    return parser


def eigen_settings(args: argparse.Namespace) -> EigenSettings:
    """The settings that determine the eigenvalues, checked."""
    minimums = {"maxiter": 1, "density_steps": 1, "top_k": 0, "trace_probes": 0, "density_probes": 0}
    for flag, least in minimums.items():
        if getattr(args, flag) < least:
            raise UsageError(f"--{flag} must be >= {least}")
    if not args.tol > 0:
        raise UsageError(f"--tol must be > 0, got {args.tol}")
    if args.trace_probes == 1:
        raise UsageError("--trace_probes needs at least 2 probes (for a standard error)")
    return EigenSettings(params=args.hessian_params, float64=args.float64, tol=args.tol,
                         maxiter=args.maxiter, method=args.eig_method)


def check_settings(job: Job, settings: EigenSettings) -> None:
    """Record the eigenvalue settings in the surface file; refuse to mix maps made otherwise."""
    if not os.path.exists(job.surf_file):  # --estimate writes nothing
        return
    surface = h5io.read_surface_file(job.surf_file)
    conflict = maps.settings_conflict(surface.attrs.get("eig_settings"), settings)
    if conflict:
        raise FileFormatError(f"{job.surf_file} holds eigenvalues made with {conflict}; use the same "
                              f"settings to resume, or another --surf_file")
    if "eig_settings" not in surface.attrs:
        with writer_lock(job.surf_file):
            h5io.update_surface_file(job.surf_file, attrs={"eig_settings": asdict(settings)})


@cli_args.reports_usage_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args, world = parse_args_and_world(build_parser(), argv)
    with world.agreed("checking the eigenvalue settings"):
        settings = eigen_settings(args)
    job = prepare_job(args, world)
    with world.agreed("recording the eigenvalue settings"):
        if world.is_root:
            check_settings(job, settings)
    xcoords, ycoords = job.coordinates()

    def task():
        return maps.hessian_task(
            model=job.model, directions=job.directions.directions, dir_type=args.dir_type,
            xcoordinates=xcoords, ycoordinates=ycoords, evalset=job.evalsets["train"],
            loss_name=args.loss_name, settings=settings, warm_start=not args.no_warm_start)

    result = run_job(args, world, job, groups=[EIG], task=task, desc="hessian eigenvalues")
    if not world.is_root or not is_whole_surface(args):
        return 0
    grid_stats, filled = result if result is not None else (None, job.surf_file)
    surface = (report(job, grid_stats, world, filled, [EIG]) if grid_stats is not None
               else h5io.read_surface_file(job.surf_file))
    if args.top_k or args.trace_probes or args.density_probes:
        centre = maps.centre_extras(
            job.model, job.evalsets["train"], loss_name=args.loss_name, settings=settings,
            top_k=args.top_k, trace_probes=args.trace_probes, density_probes=args.density_probes,
            density_steps=args.density_steps, seed=args.seed)
        maps.write_centre_extras(job.surf_file, *centre)
        surface.groups[h5io.HESSIAN_CENTRE] = centre
        print(maps.format_centre_extras(*centre), flush=True)
    if args.plot:
        figures = plotting.plot_hessian_figures(surface, fmt=args.format, dpi=args.dpi, show=args.show)
        print("figures:\n" + "\n".join(f"  {path}" for path in figures), flush=True)
    return 0
