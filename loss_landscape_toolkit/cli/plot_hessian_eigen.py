"""Curvature maps: the Hessian's largest and smallest eigenvalues at every point of a grid.

    python plot_hessian_eigen.py --model resnet56 --model_file m.t7 --x=-1:1:21 --y=-1:1:21 --plot
    mpirun -n 4 python plot_hessian_eigen.py --cuda ... --top_k 5 --trace_probes 30 --density_probes 4

max_eig and min_eig go into the same surface file as the losses (same name, same grid); the
maps of |min_eig / max_eig| show where the landscape is convex (paper Fig. 7). Runs on one
process or many and resumes like plot_surface.py. See README.md.
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from typing import Sequence

from . import _common as cli
from . import job as cli_job
from .. import h5io as h5_util
from .. import hessian
from ..hessian import maps as hessian_maps
from .. import plotting
from ..errors import FileFormatError, UsageError, reports_usage_errors
from ..h5io import EIG
from ..hessian.maps import EigenSettings

PROG = "plot_hessian_eigen.py"


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cli.add_parallel_args(parser, speed=False)
    cli.add_data_args(parser, test=False)
    cli.add_model_args(parser)
    cli.add_direction_args(parser, same_dir=False)
    g = parser.add_argument_group("eigenvalues")
    g.add_argument("--tol", type=float, default=1e-3,
                   help="relative tolerance of lambda_max and lambda_min (of the spectral norm)")
    g.add_argument("--maxiter", type=int, default=200, help="cap on Hessian-vector products per point")
    g.add_argument("--eig_method", default="lanczos", choices=hessian.EIGEN_METHODS,
                   help="lanczos: both ends from one Krylov space; eigsh: ARPACK; reference: the "
                        "reference code's shift-and-'LM' method")
    g.add_argument("--hessian_params", default="dim>1", choices=hessian.PARAM_SETS,
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
    g = parser.add_argument_group("plotting")
    g.add_argument("--show", action="store_true", help="show the figures after saving them")
    g.add_argument("--plot", action="store_true", help="plot after computing")
    plotting.add_output_args(parser, show=False)
    cli.add_run_args(parser)
    return parser


def eigen_settings(args: argparse.Namespace) -> EigenSettings:
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


def check_settings(job: cli_job.Job, settings: EigenSettings) -> None:
    """Record the eigenvalue settings in the surface file; refuse to mix maps made otherwise."""
    if not os.path.exists(job.surf_file):  # --estimate writes nothing
        return
    surface = h5_util.read_surface_file(job.surf_file)
    conflict = hessian_maps.settings_conflict(surface.attrs.get("eig_settings"), settings)
    if conflict:
        raise FileFormatError(f"{job.surf_file} holds eigenvalues made with {conflict}; use the same "
                              f"settings to resume, or another --surf_file")
    if "eig_settings" not in surface.attrs:
        with h5_util.writer_lock(job.surf_file):
            h5_util.update_surface_file(job.surf_file, attrs={"eig_settings": json.dumps(asdict(settings))})


@reports_usage_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args, world = cli.parse_args_and_world(build_parser(), argv)
    with world.agreed("checking the eigenvalue settings"):
        settings = eigen_settings(args)
    job = cli_job.prepare_job(args, world)
    with world.agreed("recording the eigenvalue settings"):
        if world.is_root:
            check_settings(job, settings)
    xcoords, ycoords = job.coordinates()

    def task():
        return hessian_maps.hessian_task(
            model=job.model, directions=job.directions.directions, dir_type=args.dir_type,
            xcoordinates=xcoords, ycoordinates=ycoords, evalset=job.evalsets["train"],
            loss_name=args.loss_name, settings=settings, warm_start=not args.no_warm_start)

    result = cli_job.run_job(args, world, job, groups=[EIG], task=task, desc="hessian eigenvalues")
    if not world.is_root:
        return 0
    if result is not None:
        cli_job.report(job, result[0], world, result[1], [EIG])
    whole = not args.estimate and (args.of is None or args.merge)  # the main file, not a shard
    if whole and (args.top_k or args.trace_probes or args.density_probes):
        arrays, attrs = hessian_maps.centre_extras(
            job.model, job.evalsets["train"], loss_name=args.loss_name, settings=settings,
            top_k=args.top_k, trace_probes=args.trace_probes, density_probes=args.density_probes,
            density_steps=args.density_steps, seed=args.seed)
        hessian_maps.write_centre_extras(job.surf_file, arrays, attrs)
        print(hessian_maps.format_centre_extras(arrays, attrs), flush=True)
    if args.plot and whole:
        figures = plotting.plot_hessian_figures(job.surf_file, fmt=args.format, dpi=args.dpi, show=args.show)
        print("figures:\n" + "\n".join(f"  {path}" for path in figures), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
