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

from torch import nn

from .. import h5io, plotting
from .._files import writer_lock
from .._imports import is_spec
from .._options import EIGEN_METHODS, PARAM_SETS
from ..errors import FileFormatError, ModelError, UsageError
from ..h5io import EIG
from ..hessian import hessian_parameters, maps
from ..hessian.maps import EigenSettings
from . import args as cli_args
from .job import Job, load_seeded_model, parse_args_and_world, prepare_job
from .modes import is_whole_surface, report, run_job

PROG = "plot_hessian_eigen.py"
BUILTIN_NUM_CLASSES = {"cifar10": 10, "digits": 10}  # the label counts of the built-in datasets
ARPACK_LEAST_SIZE = {"eigsh": 3, "reference": 2}  # ARPACK finds k eigenvalues of n > k (k = 2, 1)


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
    """The settings that determine the eigenvalues, checked with every other Hessian option
    that can be checked without the model."""
    minimums = {"maxiter": 1, "density_steps": 1, "top_k": 0, "trace_probes": 0, "density_probes": 0}
    for flag, least in minimums.items():
        if getattr(args, flag) < least:
            raise UsageError(f"--{flag} must be >= {least}, got {getattr(args, flag)}"
                             + (" (0: no top-k eigenvalues)" if flag == "top_k" else ""))
    if not 0 < args.tol < 1:
        raise UsageError(f"--tol must be > 0 and < 1 (a relative tolerance, e.g. 1e-3), got {args.tol}")
    if args.trace_probes == 1:
        raise UsageError("--trace_probes needs at least 2 probes (for a standard error)")
    return EigenSettings(params=args.hessian_params, float64=args.float64, tol=args.tol,
                         maxiter=args.maxiter, method=args.eig_method)


def model_before_data(args: argparse.Namespace) -> nn.Module | None:
    """The model as the run will build it (without its checkpoint, which changes no shape), when
    that needs no data: a custom factory, which picks its own head, or a zoo model on a
    built-in dataset. None otherwise (the head's size comes from the data's labels)."""
    if is_spec(args.model):
        num_classes = 10  # custom factories are called without it
    elif not args.trainloader and args.dataset in BUILTIN_NUM_CLASSES:
        num_classes = BUILTIN_NUM_CLASSES[args.dataset]
    else:
        return None
    return load_seeded_model(args, num_classes=num_classes, model_file="")


def check_hessian_size(model: nn.Module, args: argparse.Namespace) -> None:
    """Check the options that depend on the model's parameters: --hessian_params must select
    trainable weights, --top_k at most as many as they have, and ARPACK needs a few of them."""
    try:
        size = sum(p.numel() for _, p in hessian_parameters(model, args.hessian_params))
    except ValueError as exc:
        raise ModelError(f"--hessian_params {args.hessian_params}: {exc}") from None
    least = ARPACK_LEAST_SIZE.get(args.eig_method, 1)
    if size < least:
        raise UsageError(f"--eig_method {args.eig_method} needs a Hessian of at least {least} parameters "
                         f"and this one has {size}; use --eig_method lanczos")
    if args.top_k > size:
        raise UsageError(f"--top_k {args.top_k} is more than the {size} parameters of the Hessian "
                         f"(--hessian_params {args.hessian_params}); use --top_k {size} or fewer")


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
        early = model_before_data(args) if world.is_root else None
        if early is not None:  # before any file is written
            check_hessian_size(early, args)
    job = prepare_job(args, world)
    with world.agreed("recording the eigenvalue settings"):
        if world.is_root:
            check_hessian_size(job.model, args)  # the same check, for models built from the data
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
    nonfinite = maps.nonfinite_points(surface)
    if nonfinite:
        print(f"max_eig/min_eig: {nonfinite} point(s) non-finite (NaN/inf loss or Hessian-vector "
              f"products there): stored as NaN, masked in the figures", flush=True)
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
