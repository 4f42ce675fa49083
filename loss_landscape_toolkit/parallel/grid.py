"""Evaluate a function at every remaining point of a grid, on one process or many.

Rank 0 owns the surface file and a queue of the remaining points. Every rank, rank 0
included, computes points. Other ranks ask rank 0 for their next point while they compute the
current one (so the answer is waiting when they finish) and send their results with that
request; rank 0 answers between the batches of its own forward passes. Results are written
by rank 0 alone, in batches at most every ``flush_secs`` seconds, each batch an atomic
replacement of the file (see h5io). There is no collective operation per point.

    rank k != 0                           rank 0
    ---------------------------------     -------------------------------------------
    send (results so far, want 1) ----->  record results; reply with next point(s)
    compute current point                 compute its own points, polling between batches
    wait for reply <--------------------  ...
    (empty reply: send final results)     when the queue is empty: serve until all final
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from .. import h5io
from .._files import writer_lock
from ..h5io import MetricGroup
from .scheduler import WorkItem, WorkQueue, remaining_points
from .world import World

Poll = Callable[[], None]
# (flat index, names of the groups to compute, poll) -> {metric key: value}
PointFn = Callable[[int, tuple[str, ...], Poll], Mapping[str, float]]
# several points at once (e.g. one vmapped forward pass for all of them): one result per item
PointsFn = Callable[[Sequence[WorkItem], Poll], list[Mapping[str, float]]]


def per_point(evaluate_point: PointFn) -> PointsFn:
    """A PointsFn that computes its items one after the other."""

    def evaluate_points(items: Sequence[WorkItem], poll: Poll) -> list[Mapping[str, float]]:
        return [evaluate_point(index, needs, poll) for index, needs in items]

    return evaluate_points


TAG_REQUEST, TAG_WORK = 11, 12


@dataclass
class GridStats:
    """What a run did: points computed (by rank), and wall time."""

    computed: int = 0
    already_done: int = 0
    seconds: float = 0.0
    per_rank: list[int] = field(default_factory=list)


class ResultWriter:
    """Buffers results on rank 0 and writes them to the surface file in timed batches."""

    def __init__(self, path: str, groups: Sequence[MetricGroup], flush_secs: float):
        self.path, self.groups, self.flush_secs = path, list(groups), flush_secs
        self._pending: dict[str, tuple[list[int], list[float]]] = {}
        self._last = time.monotonic()

    def add(self, index: int, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            idx, vals = self._pending.setdefault(key, ([], []))
            idx.append(index)
            vals.append(value)

    def maybe_flush(self) -> None:
        if self._pending and time.monotonic() - self._last >= self.flush_secs:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            results = {k: (np.array(i), np.array(v)) for k, (i, v) in self._pending.items()}
            h5io.update_surface_file(self.path, groups=self.groups, results=results)
            self._pending.clear()
        self._last = time.monotonic()


def run_grid(*, world: World, surf_file: str, groups: Sequence[MetricGroup],
             evaluate_points: PointsFn, chunk: int = 1, flush_secs: float = 5.0,
             progress: bool = True, desc: str = "points", only: np.ndarray | None = None) -> GridStats:
    """Compute every point that some group in ``groups`` still lacks, on all ranks.

    Every rank calls this together after the surface file exists. Rank 0 reads which points
    remain (restricted to the flat indices ``only``, e.g. a shard, when given), hands them out
    ``chunk`` at a time, writes all results and returns the statistics; other ranks return
    empty statistics.
    """
    start = time.monotonic()
    if world.is_root:
        with writer_lock(surf_file):
            h5io.update_surface_file(surf_file, groups=groups)  # arrays and masks exist
            surface = h5io.read_surface_file(surf_file)
            todo = remaining_points(surface.done_masks(groups))
            total = int(np.prod(surface.shape))
            if only is not None:
                allowed = set(np.asarray(only).tolist())
                total, todo = len(allowed), [item for item in todo if item[0] in allowed]
            root = _Root(world, todo, ResultWriter(surf_file, groups, flush_secs),
                         total=total, progress=progress, desc=desc)
            stats = root.run(evaluate_points, chunk)
    else:
        _run_worker(world, evaluate_points, chunk)
        stats = GridStats()
    stats.seconds = time.monotonic() - start
    return stats


class _Root:
    def __init__(self, world: World, todo: list[WorkItem], writer: ResultWriter, *, total: int,
                 progress: bool, desc: str):
        self.world, self.writer = world, writer
        self.queue = WorkQueue(todo)
        self.stats = GridStats(already_done=total - len(todo), per_rank=[0] * world.size)
        self.active = world.size - 1
        interactive = sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=total - len(todo), desc=desc, unit="pt",
                        disable=not progress, dynamic_ncols=True, smoothing=0.1,
                        mininterval=0.5 if interactive else 30.0, file=sys.stderr)

    def run(self, evaluate_points: PointsFn, chunk: int) -> GridStats:
        try:
            while items := self.queue.take(chunk):
                for (index, _), values in zip(items, evaluate_points(items, self.poll)):
                    self._record(0, index, values)
                self.poll()
            while self.active > 0:  # no work left here: serve the others until they finish
                self._serve(*self.world.recv_any(TAG_REQUEST))
        finally:
            self.writer.flush()
            self.bar.close()
        return self.stats

    def poll(self) -> None:
        """Answer every waiting request (called between batches and between points)."""
        if self.world.comm is None:
            return
        while (message := self.world.poll_any(TAG_REQUEST)) is not None:
            self._serve(*message)

    def _serve(self, source: int, msg: tuple) -> None:
        results, want, final = msg
        for index, values in results:
            self._record(source, index, values)
        if final:
            self.active -= 1
        else:
            self.world.send(self.queue.take(want), source, TAG_WORK)

    def _record(self, rank: int, index: int, values: Mapping[str, float]) -> None:
        self.writer.add(index, values)
        self.stats.computed += 1
        self.stats.per_rank[rank] += 1
        first = next(iter(values.items()), None)
        if first is not None:
            self.bar.set_postfix_str(f"{first[0]}={first[1]:.4g}", refresh=False)
        self.bar.update(1)
        self.writer.maybe_flush()


def _run_worker(world: World, evaluate_points: PointsFn, chunk: int) -> None:
    results: list[tuple[int, Mapping[str, float]]] = []

    def ask() -> Any:
        world.send((list(results), chunk, False), 0, TAG_REQUEST)
        results.clear()
        return world.irecv(0, TAG_WORK)

    pending = ask()
    while work := pending.wait():
        pending = ask()  # fetch the next chunk while this one computes
        values = evaluate_points(work, _no_poll)
        results.extend((index, dict(v)) for (index, _), v in zip(work, values))
    world.send((results, 0, True), 0, TAG_REQUEST)


def _no_poll() -> None:
    return None
