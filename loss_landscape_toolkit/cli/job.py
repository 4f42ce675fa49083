"""Set-up, run modes and reporting shared by plot_surface.py and plot_hessian_eigen.py.

Like cli_common, this is the command-line edge: it reads the argparse Namespace and calls the
library. Run modes of a grid job:

normal              fill the missing points of the surface file, on every rank of this job
--rank I --of N     fill shard I of N of the remaining points into a file of its own (job
                    arrays or single runs without MPI; each shard resumes on its own)
--merge --of N      combine the shard files into the surface file
--estimate          time a few points, print the expected wall time, and exit
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time
from dataclasses import dataclass
from typing import Callable, ContextManager, Sequence

import numpy as np
from torch import nn

from . import _common as cli
from .. import h5io as h5_util
from .. import directions as net_plotter
from .. import stats as surface_stats
from ..errors import UsageError
from ..parallel.grid import GridStats, PointsFn, run_grid
from ..h5io import MetricGroup
from ..parallel.world import World, abort_on_error
from ..parallel.scheduler import WorkItem, remaining_points, shard
from ..surface import EvalSet, same_model_on_all_ranks

TaskFactory = Callable[[], ContextManager[PointsFn]]
ESTIMATE_POINTS = 3  # timed points of --estimate, after one warm-up point


@dataclass
class Job:
    """Everything a rank needs to compute its share of a grid."""

    model: nn.Module
    evalsets: dict[str, EvalSet]
    dir_file: str
    directions: h5_util.DirectionFile
    surf_file: str
    x: cli.GridRange
    y: cli.GridRange | None
    model_fingerprint: str

    def coordinates(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self.x.coordinates(), None if self.y is None else self.y.coordinates()


# --------------------------------------------------------------------------- set-up
def prepare_job(args: argparse.Namespace, world: World) -> Job:
    """Set-up on every rank, each step agreed: one rank's bad input stops all ranks."""
    with world.agreed("checking the arguments and loading the data"):
        x = cli.parse_range(args.x, "--x")
        y = None if args.y is None else cli.parse_range(args.y, "--y")
        check_run_mode(args)
        if args.dir_file and not os.path.isfile(args.dir_file):
            raise h5_util.FileFormatError(f"--dir_file {args.dir_file} does not exist")
        cli.check_model_spec(args.model, [args.model_file, args.model_file2, args.model_file3])
        device = cli.configure_torch(args, world)
        if world.is_root:  # rank 0 alone may download missing data
            evalsets = cli.load_evalsets(args, device=device)
    with world.agreed("loading the data and the model"):
        if not world.is_root:
            evalsets = cli.load_evalsets(args, device=device, download=False)
        num_classes = evalsets["train"].num_classes
        model = cli.load_model(args, num_classes=num_classes, model_file=args.model_file)
        dir_file = cli.direction_file_name(args, two_d=y is not None)
    model_fingerprint = same_model_on_all_ranks(world, model)
    created = False
    with world.agreed("writing the direction file"):
        if world.is_root and not os.path.exists(dir_file):
            with contextlib.suppress(h5_util.AlreadyExists):  # a concurrent job made it first
                cli.create_directions(args, model, dir_file, two_d=y is not None, world=world,
                                      num_classes=num_classes)
                created = True
    with world.agreed("reading the directions"):
        directions = net_plotter.load_directions(dir_file, model, dir_type=args.dir_type,
                                                 ndirections=1 if y is None else 2)
        cli.check_reused_directions(args, directions, model_fingerprint)
        surf_file = cli.surface_file_name(args, dir_file, x, y)
    job = Job(model, evalsets, dir_file, directions, surf_file, x, y, model_fingerprint)
    with world.agreed("setting up the surface file"):
        if world.is_root:
            resumed = setup_surface_file(args, world, job)
            announce(args, world, job, created=created, resumed=resumed)
    job.model = model.to(device)
    if args.ngpu > 1:
        job.model = nn.DataParallel(job.model)
    return job


def check_run_mode(args: argparse.Namespace) -> None:
    """Resolve and check --rank/--of/--merge/--estimate (a SLURM job array gives the rank)."""
    if args.of is None:
        if args.rank is not None or args.merge:
            raise UsageError("--rank and --merge need --of N (the number of shards)")
        return
    if args.of < 1:
        raise UsageError(f"--of must be >= 1, got {args.of}")
    if args.rank is None and not args.merge:
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        if task is None:
            raise UsageError("--of N needs --rank I (0 <= I < N), or a SLURM job array "
                             "(SLURM_ARRAY_TASK_ID) to take it from")
        args.rank = int(task) - int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0"))
    if args.rank is not None and not 0 <= args.rank < args.of:
        raise UsageError(f"--rank must be in 0..{args.of - 1} for --of {args.of}, got {args.rank}")
    if args.merge and args.estimate:
        raise UsageError("--merge and --estimate do not go together")


def setup_surface_file(args: argparse.Namespace, world: World, job: Job) -> bool:
    """Create the surface file, or check that the existing one can be resumed. True if it existed.

    With --estimate a missing file is not created (nothing is written).
    """
    if os.path.exists(job.surf_file):
        check_resumable(args, job, h5_util.read_surface_file(job.surf_file))
        return True
    if args.estimate:
        return False
    folder = os.path.dirname(job.surf_file)
    if folder and not os.path.isdir(folder):
        raise h5_util.FileFormatError(f"cannot write the surface file {job.surf_file}: folder "
                                      f"{folder} does not exist")
    try:
        create_surface_like(args, world, job, job.surf_file)
    except h5_util.AlreadyExists:  # a concurrent job (e.g. another array task) made it first
        check_resumable(args, job, h5_util.read_surface_file(job.surf_file))
        return True
    return False


def create_surface_like(args: argparse.Namespace, world: World, job: Job, path: str, *,
                        shard_points: np.ndarray | None = None, extra: dict | None = None) -> None:
    """An empty surface (or shard) file for this job's grid, with provenance attributes."""
    xcoords, ycoords = job.coordinates()
    attrs = cli.provenance(args, world, {
        "dir_fingerprint": job.directions.fingerprint, "model_fingerprint": job.model_fingerprint,
        "model": args.model, "model_file": args.model_file,
        "grid_convention": "Z[iy, ix] = f(xcoordinates[ix], ycoordinates[iy])", **(extra or {})})
    h5_util.create_surface_file(path, dir_file=job.dir_file, xcoordinates=xcoords,
                                ycoordinates=ycoords, attrs=attrs, shard_points=shard_points)


def check_resumable(args: argparse.Namespace, job: Job, surface: h5_util.SurfaceFile) -> None:
    xcoords, ycoords = job.coordinates()
    cli.check_resumable(surface, xcoordinates=xcoords, ycoordinates=ycoords, dir_file=job.dir_file,
                        dir_fingerprint=job.directions.fingerprint,
                        model_fingerprint=job.model_fingerprint,
                        settings={k: getattr(args, k) for k in cli.RESUME_KEYS if hasattr(args, k)})


# --------------------------------------------------------------------------- run modes
def run_job(args: argparse.Namespace, world: World, job: Job, *, groups: Sequence[MetricGroup],
            task: TaskFactory, desc: str) -> tuple[GridStats, str] | None:
    """Run the mode the flags ask for. A computing run returns its statistics (meaningful on
    rank 0) and the file it filled (the surface file, or this job's shard file)."""
    if args.merge:
        with world.agreed("merging the shards"):
            if world.is_root:
                merge_shards(args, job, groups)
        return None
    chunk = getattr(args, "points_per_forward", 1)
    if args.estimate:
        with abort_on_error(world):
            if world.is_root:
                with task() as evaluate_points:
                    estimate(job, groups, evaluate_points, nranks=world.size, chunk=chunk)
        return None
    target, only = job.surf_file, None
    if args.of is not None:
        with world.agreed("setting up the shard file"):
            if world.is_root:
                target, only = setup_shard(args, world, job, groups)
    with abort_on_error(world), task() as evaluate_points:
        stats = run_grid(world=world, surf_file=target, groups=groups, evaluate_points=evaluate_points,
                         chunk=chunk, flush_secs=args.flush_secs, progress=not args.no_progress,
                         desc=desc, only=only)
    return stats, target


def shard_file_name(surf_file: str, rank: int, of: int) -> str:
    """Shard ``rank`` of ``of`` of ``surf_file``, named in the reference's appending style."""
    return f"{surf_file}_rank={rank}_of={of}.h5"


def setup_shard(args: argparse.Namespace, world: World, job: Job,
                groups: Sequence[MetricGroup]) -> tuple[str, np.ndarray]:
    """The shard file of this job (created with its share of the points remaining in the
    surface file, or resumed with the share it recorded) and that share's flat indices."""
    path = shard_file_name(job.surf_file, args.rank, args.of)
    if not os.path.exists(path):
        main = h5_util.read_surface_file(job.surf_file)
        todo = remaining_points(main.done_masks(groups))
        points = np.array([k for k, _ in shard(todo, args.rank, args.of)], dtype=np.int64)
        with contextlib.suppress(h5_util.AlreadyExists):
            create_surface_like(args, world, job, path, shard_points=points,
                                extra={"shard_rank": args.rank, "shard_count": args.of})
    surface = h5_util.read_surface_file(path)
    check_resumable(args, job, surface)
    if surface.shard_points is None:
        raise h5_util.FileFormatError(f"{path} is not a shard file (it has no '{h5_util.SHARD_KEY}')")
    print(f"shard {args.rank} of {args.of}: {path} ({len(surface.shard_points)} points)", flush=True)
    return path, surface.shard_points


def merge_shards(args: argparse.Namespace, job: Job, groups: Sequence[MetricGroup]) -> None:
    """Copy every computed point of the shard files into the surface file (one atomic write)."""
    results: dict[str, tuple[list, list]] = {}
    missing, unfinished, merged = [], [], 0
    for rank in range(args.of):
        path = shard_file_name(job.surf_file, rank, args.of)
        if not os.path.exists(path):
            missing.append(rank)
            continue
        surface = h5_util.read_surface_file(path)
        check_resumable(args, job, surface)
        for group in groups:
            index = np.flatnonzero(surface.done_mask(group))
            merged += len(index)
            for key in group.keys:
                idx, vals = results.setdefault(key, ([], []))
                idx.append(index)
                vals.append(surface.arrays[key].reshape(-1)[index])
        points = surface.shard_points if surface.shard_points is not None else []
        if not all(surface.done_mask(g).reshape(-1)[points].all() for g in groups):
            unfinished.append(rank)
    with h5_util.writer_lock(job.surf_file):
        h5_util.update_surface_file(job.surf_file, groups=groups, results={
            k: (np.concatenate(i), np.concatenate(v)) for k, (i, v) in results.items()})
    print(f"merged {merged} point value(s) from {args.of - len(missing)} of {args.of} shard files "
          f"into {job.surf_file}", flush=True)
    if missing or unfinished:
        print(f"not complete: missing shard files {missing}, unfinished shards {unfinished}; run "
              f"them (same command with --rank I) and merge again", flush=True)


def estimate(job: Job, groups: Sequence[MetricGroup], evaluate_points: PointsFn, *, nranks: int,
             chunk: int = 1) -> None:
    """Time one warm-up chunk and a few more, spread over the remaining grid; print the plan."""
    xcoords, ycoords = job.coordinates()
    total = len(xcoords) * (1 if ycoords is None else len(ycoords))
    if os.path.exists(job.surf_file):
        surface = h5_util.read_surface_file(job.surf_file)
        todo = remaining_points(surface.done_masks(groups))
    else:
        todo = [(k, tuple(g.name for g in groups)) for k in range(total)]
    if not todo:
        print(f"estimate: all {total} points are done already", flush=True)
        return
    starts = sorted({int(i) for i in np.linspace(0, len(todo) - 1, min(len(todo), ESTIMATE_POINTS + 1))})
    seconds = _time_chunks([todo[i:i + chunk] for i in starts], evaluate_points)
    per_point = float(np.mean(seconds[1:])) if len(seconds) > 1 else seconds[0]
    plan = ", ".join(f"{n}: {_duration(len(todo) * per_point / n)}" for n in (1, 2, 4, 8, 16, 32, 64, 128))
    print(f"estimate: {len(todo)} of {total} points to compute; {per_point:.3g} s per point "
          f"(timed {len(seconds) - 1 or 1} point(s) after a warm-up of {seconds[0]:.3g} s)\n"
          f"estimate: expected wall time with {nranks} rank(s): "
          f"{_duration(len(todo) * per_point / nranks)} (plus start-up)\n"
          f"estimate: by number of ranks: {plan}", flush=True)


def _time_chunks(chunks: Sequence[Sequence[WorkItem]], evaluate_points: PointsFn) -> list[float]:
    """Seconds per point of each chunk."""
    seconds = []
    for items in chunks:
        start = time.perf_counter()
        evaluate_points(items, lambda: None)
        seconds.append((time.perf_counter() - start) / len(items))
    return seconds


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# --------------------------------------------------------------------------- reporting
def announce(args: argparse.Namespace, world: World, job: Job, *, created: bool, resumed: bool) -> None:
    if not args.model_file:
        print(f"note: no --model_file: {args.model} is randomly initialised, so this is the "
              f"landscape of an untrained network", flush=True)
    npoints = job.x.num * (1 if job.y is None else job.y.num)
    grid = f"{job.x.num} points" if job.y is None else f"{job.x.num} x {job.y.num} = {npoints} points"
    data = "; ".join(e.description for e in job.evalsets.values())
    surface_state = "resuming" if resumed else ("not created by --estimate" if args.estimate else "created")
    lines = [
        f"model: {args.model}" + (f" from {args.model_file}" if args.model_file else " (random init)"),
        f"data: {data}; batch size {args.batch_size}; {world.size} process(es)",
        f"direction file: {job.dir_file} ({'created' if created else 'reused'})",
        f"surface file: {job.surf_file} ({surface_state})",
        f"grid: {grid}",
    ]
    if len(job.directions.directions) == 2:
        cos = net_plotter.cosine_similarity(*job.directions.directions)
        lines.append(f"cosine similarity between x-axis and y-axis: {cos:f}")
    print("\n".join(lines), flush=True)


def report(job: Job, stats: GridStats, world: World, surf_file: str,
           groups: Sequence[MetricGroup]) -> None:
    """What a computing run did, where its files are, and a summary of the file it filled."""
    per_point = stats.seconds / stats.computed if stats.computed else float("nan")
    ranks = ", ".join(f"rank {r}: {n}" for r, n in enumerate(stats.per_rank)) if world.size > 1 else ""
    print(f"computed {stats.computed} point(s) in {stats.seconds:.1f} s ({per_point:.3g} s/point"
          f"{'; ' + ranks if ranks else ''}); {stats.already_done} were already done", flush=True)
    print(f"direction file: {job.dir_file}\nsurface file: {surf_file}", flush=True)
    surface = h5_util.read_surface_file(surf_file)
    print(surface_stats.completion_summary(surface), flush=True)
    if all(surface.done_mask(g).all() for g in groups):  # the paper-level numbers of a finished grid
        for name in surface_stats.loss_names(surface):
            print(surface_stats.format_stats(surface_stats.surface_stats(surface, name)), flush=True)
