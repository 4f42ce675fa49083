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

SIGTERM (a SLURM time limit) and SIGINT stop a point that is computing at once, and are
otherwise acted on at the next safe place: rank 0 writes every result it holds and raises
:class:`~loss_landscape_toolkit.errors.Interrupted`; a worker first sends rank 0 its finished
results with the signal, which stops rank 0 the same way.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from .. import h5io
from .._files import writer_lock
from ..errors import Interrupted
from ..h5io import MetricGroup
from .scheduler import WorkItem, WorkQueue, remaining_points
from .world import WAIT_REPORT_SECS, World

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


class StopSignals:
    """Turns SIGTERM and SIGINT into :class:`Interrupted`: at once inside :meth:`computing`
    (a point in progress is only lost), otherwise at the next :meth:`check`, so that recording
    and writing results are never cut in half. Handlers are installed only in the main thread."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._interruptible = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        if self._interruptible:
            self._interruptible = False
            raise Interrupted(signum)

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)

    @contextlib.contextmanager
    def computing(self, interruptible: bool = True):
        """A stretch of work that a signal may cut short (``interruptible=False``: one that it
        must not, inside a stretch that it may, e.g. serving requests from within a point)."""
        self.check()
        before = self._interruptible
        self._interruptible = interruptible
        try:
            yield
        finally:
            self._interruptible = before
        self.check()


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
    with StopSignals() as signals:
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
                             total=total, progress=progress, desc=desc, signals=signals)
                try:
                    stats = root.run(evaluate_points, chunk)
                except Interrupted as exc:
                    raise Interrupted(exc.signum, f"the {root.stats.computed} point(s) finished in this "
                                      f"run are saved in {surf_file}; run the same command again to "
                                      f"compute the rest") from None
        else:
            _run_worker(world, evaluate_points, chunk, signals)
            stats = GridStats()
    stats.seconds = time.monotonic() - start
    return stats


class _Root:
    def __init__(self, world: World, todo: list[WorkItem], writer: ResultWriter, *, total: int,
                 progress: bool, desc: str, signals: StopSignals):
        self.world, self.writer, self.signals = world, writer, signals
        self.queue = WorkQueue(todo)
        self.stats = GridStats(already_done=total - len(todo), per_rank=[0] * world.size)
        self.working = set(range(1, world.size))  # ranks that have not sent their last results
        self.heard = {r: time.monotonic() for r in self.working}  # when each rank last sent
        self.slowest = 0.0  # seconds per point of rank 0's slowest chunk
        interactive = sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=total - len(todo), desc=desc, unit="pt",
                        disable=not progress, dynamic_ncols=True, smoothing=0.1,
                        mininterval=0.5 if interactive else 30.0, file=sys.stderr)

    def run(self, evaluate_points: PointsFn, chunk: int) -> GridStats:
        try:
            while items := self.queue.take(chunk):
                started = time.monotonic()
                with self.signals.computing():
                    results = evaluate_points(items, self.poll)
                self.slowest = max(self.slowest, (time.monotonic() - started) / len(items))
                for (index, _), values in zip(items, results):
                    self._record(0, index, values)
                self.poll()
            self._serve_until_all_finish()
        finally:
            self.writer.flush()
            self.bar.close()
        return self.stats

    def _serve_until_all_finish(self) -> None:
        """With no work left here, serve the other ranks until each has sent its last results;
        name the ranks that stay silent much longer than a point takes (a hung GPU or file
        system), as the set-up steps do, instead of waiting without a word."""
        next_report = max(WAIT_REPORT_SECS, 5 * self.slowest)
        while self.working:
            message = self.world.poll_any(TAG_REQUEST)
            if message is not None:
                self._serve(*message)
                self.signals.check()
                continue
            time.sleep(0.005)
            now = time.monotonic()
            silent = sorted(r for r in self.working if now - self.heard[r] >= next_report)
            if silent:
                hosts = sorted({self.world.hosts[r] for r in silent}) if self.world.hosts else []
                print(f"waiting {now - min(self.heard[r] for r in silent):.0f} s for rank(s) {silent} "
                      f"(host(s) {', '.join(hosts) or '?'}) to send their last point(s); a point takes "
                      f"about {self.slowest:.3g} s on rank 0; a rank that hangs (a stuck GPU or file "
                      f"system) stalls the job here", file=sys.stderr, flush=True)
                next_report *= 2

    def poll(self) -> None:
        """Answer every waiting request (called between batches and between points)."""
        if self.world.comm is None:
            return
        with self.signals.computing(interruptible=False):
            while (message := self.world.poll_any(TAG_REQUEST)) is not None:
                self._serve(*message)

    def _serve(self, source: int, msg: tuple) -> None:
        results, want, final, signum = msg
        self.heard[source] = time.monotonic()
        for index, values in results:
            self._record(source, index, values)
        if final:
            self.working.discard(source)
        else:
            self.world.send(self.queue.take(want), source, TAG_WORK)
        if signum:  # the worker was stopped: stop the job, keeping what it sent
            self.signals.signum = self.signals.signum or signum

    def _record(self, rank: int, index: int, values: Mapping[str, float]) -> None:
        self.writer.add(index, values)
        self.stats.computed += 1
        self.stats.per_rank[rank] += 1
        first = next(iter(values.items()), None)
        if first is not None:
            self.bar.set_postfix_str(f"{first[0]}={first[1]:.4g}", refresh=False)
        self.bar.update(1)
        self.writer.maybe_flush()


def _run_worker(world: World, evaluate_points: PointsFn, chunk: int, signals: StopSignals) -> None:
    results: list[tuple[int, Mapping[str, float]]] = []

    def ask() -> Any:
        world.send((list(results), chunk, False, 0), 0, TAG_REQUEST)
        results.clear()
        return world.irecv(0, TAG_WORK)

    try:
        pending = ask()
        while work := pending.wait():
            signals.check()
            pending = ask()  # fetch the next chunk while this one computes
            with signals.computing():
                values = evaluate_points(work, _no_poll)
            results.extend((index, dict(v)) for (index, _), v in zip(work, values))
    except Interrupted as exc:
        world.send((results, 0, True, exc.signum), 0, TAG_REQUEST)
        raise
    world.send((results, 0, True, 0), 0, TAG_REQUEST)


def _no_poll() -> None:
    return None
