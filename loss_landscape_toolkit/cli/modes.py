"""The run modes of a grid job, and what a finished run reports.

normal              fill the missing points of the surface file, on every rank of this job
--rank I --of N     fill shard I of N (every N-th point of the grid, less those the surface
                    file has) into a file of its own (job arrays or single runs without MPI;
                    each shard resumes on its own)
--merge --of N      combine the shard files into the surface file; exit 3 while points are missing
--estimate          time a few points, print the expected wall time, and exit
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import time
from typing import Callable, ContextManager, Sequence

import numpy as np

from .. import h5io, stats
from .._files import writer_lock
from .._naming import shard_file_name
from ..errors import FileFormatError, Incomplete
from ..h5io import MetricGroup
from ..parallel.grid import GridStats, PointsFn, run_grid
from ..parallel.scheduler import WorkItem, remaining_points, shard_points
from ..parallel.world import World, abort_on_error
from .job import Job, check_resumable, create_surface_like

TaskFactory = Callable[[], ContextManager[PointsFn]]
ESTIMATE_POINTS = 3  # timed points of --estimate, after one warm-up point


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
    if job.shard is not None:
        with world.agreed("setting up the shard file"):
            if world.is_root:
                target, only = setup_shard(args, world, job, groups)
    with abort_on_error(world), task() as evaluate_points:
        grid_stats = run_grid(world=world, surf_file=target, groups=groups, evaluate_points=evaluate_points,
                              chunk=chunk, flush_secs=args.flush_secs, progress=not args.no_progress,
                              desc=desc, only=only)
    return grid_stats, target


def is_whole_surface(args: argparse.Namespace) -> bool:
    """Whether this run leaves the whole surface file to look at (not a shard, not an estimate)."""
    return not args.estimate and (args.of is None or args.merge)


# --------------------------------------------------------------------------- shards
def setup_shard(args: argparse.Namespace, world: World, job: Job,
                groups: Sequence[MetricGroup]) -> tuple[str, np.ndarray]:
    """The shard file of this job and the flat indices it is to compute now.

    A shard's share of the grid is fixed by the grid size, its rank and the number of shards
    alone (every ``of``-th point), so it does not depend on when the shard starts: a shard that
    starts after a partial merge still owns all its points. Points of the share that the
    surface file already holds are skipped.
    """
    path = shard_file_name(job.surf_file, job.shard, args.of)
    if not os.path.exists(path):
        points = shard_points(job.npoints, job.shard, args.of)
        with contextlib.suppress(h5io.AlreadyExists):
            create_surface_like(args, world, job, path, shard_points=points,
                                extra={"shard_rank": job.shard, "shard_count": args.of})
    surface = h5io.read_surface_file(path)
    check_resumable(args, job, surface)
    if surface.shard_points is None:
        raise FileFormatError(f"{path} is not a shard file (it has no '{h5io.SHARD_KEY}')")
    in_main = _done_everywhere(h5io.read_surface_file(job.surf_file), groups)
    points = surface.shard_points[~in_main[surface.shard_points]]
    print(f"shard {job.shard} of {args.of}: {path} ({len(surface.shard_points)} points, "
          f"{len(surface.shard_points) - len(points)} of them already in {job.surf_file})", flush=True)
    return path, points


def _done_everywhere(surface: h5io.SurfaceFile, groups: Sequence[MetricGroup]) -> np.ndarray:
    """Flat mask of the points every group in ``groups`` has computed."""
    return np.logical_and.reduce([surface.done_mask(g).reshape(-1) for g in groups])


def merge_shards(args: argparse.Namespace, job: Job, groups: Sequence[MetricGroup]) -> None:
    """Copy every computed point of the shard files into the surface file (one atomic write).

    Raises:
        Incomplete: the surface file still lacks points after the merge (shard files missing
            or unfinished); it names the shards to run.
    """
    results: dict[str, tuple[list, list]] = {}
    missing, merged = [], 0
    for rank in range(args.of):
        path = shard_file_name(job.surf_file, rank, args.of)
        if not os.path.exists(path):
            missing.append(rank)
            continue
        surface = h5io.read_surface_file(path)
        check_resumable(args, job, surface)
        for group in groups:
            index = np.flatnonzero(surface.done_mask(group))
            merged += len(index)
            for key in group.keys:
                idx, vals = results.setdefault(key, ([], []))
                idx.append(index)
                vals.append(surface.arrays[key].reshape(-1)[index])
    with writer_lock(job.surf_file):
        h5io.update_surface_file(job.surf_file, groups=groups, results={
            k: (np.concatenate(i), np.concatenate(v)) for k, (i, v) in results.items()})
    print(f"merged {merged} point value(s) from {args.of - len(missing)} of {args.of} shard files "
          f"into {job.surf_file}", flush=True)
    undone = np.flatnonzero(~_done_everywhere(h5io.read_surface_file(job.surf_file), groups))
    if len(undone):
        ranks = sorted({int(k) % args.of for k in undone})
        raise Incomplete(
            f"not complete: {len(undone)} of {job.npoints} points are still missing, from shard(s) "
            f"{ranks} (shard files missing: {missing or 'none'}); run those shards (the same "
            f"command with --rank I, without --merge) and merge again")


# --------------------------------------------------------------------------- estimate
def estimate(job: Job, groups: Sequence[MetricGroup], evaluate_points: PointsFn, *, nranks: int,
             chunk: int = 1) -> None:
    """Time one warm-up chunk and a few more, spread over the remaining grid; print the plan and
    what to ask SLURM for (ranks and --time)."""
    if os.path.exists(job.surf_file):
        surface = h5io.read_surface_file(job.surf_file)
        todo = remaining_points(surface.done_masks(groups))
    else:
        todo = [(k, tuple(g.name for g in groups)) for k in range(job.npoints)]
    if not todo:
        print(f"estimate: all {job.npoints} points are done already", flush=True)
        return
    starts = sorted({int(i) for i in np.linspace(0, len(todo) - 1, min(len(todo), ESTIMATE_POINTS + 1))})
    seconds = _time_chunks([todo[i:i + chunk] for i in starts], evaluate_points)
    per_point = float(np.mean(seconds[1:])) if len(seconds) > 1 else seconds[0]
    plan = ", ".join(f"{n}: {_duration(len(todo) * per_point / n)}" for n in (1, 2, 4, 8, 16, 32, 64, 128))
    on_gpu = any(p.is_cuda for p in job.model.parameters())
    print(f"estimate: {len(todo)} of {job.npoints} points to compute; {per_point:.3g} s per point "
          f"(timed {len(seconds) - 1 or 1} point(s) after a warm-up of {seconds[0]:.3g} s)\n"
          f"estimate: expected wall time with {nranks} rank(s): "
          f"{_duration(len(todo) * per_point / nranks)} (plus start-up)\n"
          f"estimate: by number of ranks: {plan}\n"
          f"{_slurm_advice(len(todo) * per_point, len(todo), on_gpu=on_gpu)}", flush=True)


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


def _slurm_advice(seconds: float, npoints: int, *, on_gpu: bool) -> str:
    """What to ask SLURM for: the time with 4 GPUs (ranks), and the ranks and --time that finish
    within 1 h and within 4 h. Assumes the work splits evenly over ranks, one point each at least."""
    unit = "GPUs" if on_gpu else "CPU ranks (cores shared on a node slow each one down)"
    gpus = " --gpus-per-task=1" if on_gpu else ""
    lines = [f"estimate: with 4 {unit}: ~{_duration(seconds / min(4, npoints))} "
             f"(sbatch --nodes=1 --ntasks=4{gpus})"]
    targets: dict[int, str] = {}
    for hours in (1, 4):
        ranks = min(npoints, max(1, math.ceil(seconds / (hours * 3600))))
        wall = seconds / ranks
        reach = "" if wall <= hours * 3600 else ", the most that helps: one point per rank"
        targets.setdefault(ranks, f"under {hours} h: --ntasks={ranks} (~{_duration(wall)}{reach}; "
                                  f"--time={_slurm_time(1.5 * wall + 600)})")
    nodes = ("on nodes of G GPUs also --nodes=ntasks/G" if on_gpu
             else "more ranks than a node has cores: also --nodes")
    lines.append(f"estimate: suggested for {'; '.join(targets.values())}; {nodes} "
                 f"(sbatch options, or SBATCH_ARGS of slurm/submit.sh; --time has a 50% + 10 min margin)")
    return "\n".join(lines)


def _slurm_time(seconds: float) -> str:
    """``seconds`` rounded up to whole minutes, as sbatch --time reads it ([D-]HH:MM:SS)."""
    minutes = math.ceil(seconds / 60)
    days, minutes = divmod(minutes, 24 * 60)
    return f"{days}-{minutes // 60:02d}:{minutes % 60:02d}:00" if days else f"{minutes // 60:02d}:{minutes % 60:02d}:00"


# --------------------------------------------------------------------------- after a run
def report(job: Job, grid_stats: GridStats, world: World, surf_file: str,
           groups: Sequence[MetricGroup]) -> h5io.SurfaceFile:
    """Print what a computing run did, where its files are, and a summary of the file it filled.

    Returns:
        That file, read once (for the figures of ``--plot``).
    """
    per_point = grid_stats.seconds / grid_stats.computed if grid_stats.computed else float("nan")
    ranks = ", ".join(f"rank {r}: {n}" for r, n in enumerate(grid_stats.per_rank)) if world.size > 1 else ""
    print(f"computed {grid_stats.computed} point(s) in {grid_stats.seconds:.1f} s ({per_point:.3g} s/point"
          f"{'; ' + ranks if ranks else ''}); {grid_stats.already_done} were already done", flush=True)
    print(f"direction file: {job.dir_file}\nsurface file: {surf_file}", flush=True)
    surface = h5io.read_surface_file(surf_file)
    print(stats.completion_summary(surface), flush=True)
    if all(surface.done_mask(g).all() for g in groups):  # the paper-level numbers of a finished grid
        for name in stats.loss_names(surface):
            print(stats.format_stats(stats.surface_stats(surface, name)), flush=True)
    return surface
