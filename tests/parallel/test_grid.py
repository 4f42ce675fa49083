"""parallel/grid.py: the grid loop on several ranks in one process (fake communicator), real files.

The real mpirun runs of the same loop are in tests/cli; here the scheduling itself is checked:
every point computed exactly once, results written by rank 0 alone, shards, resumes, chunks.
"""
from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest
from fake_mpi import run_ranks

from loss_landscape_toolkit import h5io
from loss_landscape_toolkit.h5io import TEST, TRAIN
from loss_landscape_toolkit.parallel.grid import run_grid
from loss_landscape_toolkit.parallel.world import World

NX, NY = 7, 5


def _surface(tmp_path) -> str:
    path = str(tmp_path / "s.h5")
    h5io.create_surface_file(path, dir_file="", xcoordinates=np.linspace(-1, 1, NX),
                             ycoordinates=np.linspace(0, 1, NY), attrs={})
    return path


class Recorder:
    """A work function that records which rank computed which point (thread-safe)."""

    def __init__(self, delay=lambda index: 0.0):
        self.calls: list[tuple[int, int, tuple[str, ...]]] = []
        self.lock = threading.Lock()
        self.delay = delay

    def for_rank(self, rank: int):
        def evaluate_points(items, poll):
            out = []
            for index, needs in items:
                time.sleep(self.delay(index))
                poll()
                with self.lock:
                    self.calls.append((rank, index, needs))
                values = {}
                for name in needs:
                    values[f"{name}_loss"], values[f"{name}_acc"] = index + 0.5, 100.0 - index
                out.append(values)
            return out
        return evaluate_points


@pytest.mark.parametrize("size, chunk", [(1, 1), (2, 1), (3, 1), (4, 3)])
def test_every_point_once_and_written_by_rank_0(tmp_path, size, chunk):
    path = _surface(tmp_path)
    rec = Recorder(delay=lambda index: 0.002 * (index % 3))  # uneven points

    def body(world: World):
        return run_grid(world=world, surf_file=path, groups=[TRAIN, TEST], evaluate_points=rec.for_rank(world.rank),
                        chunk=chunk, flush_secs=0.0, progress=False)

    results = run_ranks(size, body) if size > 1 else [body(World())]
    assert not [r for r in results if isinstance(r, BaseException)], results
    counts = Counter(index for _, index, _ in rec.calls)
    assert sorted(counts) == list(range(NX * NY)) and set(counts.values()) == {1}
    assert all(needs == ("train", "test") for _, _, needs in rec.calls)
    stats = results[0]
    assert stats.computed == NX * NY and stats.already_done == 0
    assert stats.per_rank == [sum(1 for r, _, _ in rec.calls if r == k) for k in range(size)]
    surface = h5io.read_surface_file(path)
    flat = np.arange(NX * NY).reshape(NY, NX)
    assert np.array_equal(surface.arrays["train_loss"], flat + 0.5)  # Z[iy, ix] at flat index iy * nx + ix
    assert np.array_equal(surface.arrays["test_acc"], 100.0 - flat)
    assert surface.done_mask(TRAIN).all() and surface.done_mask(TEST).all()


def test_resume_computes_only_what_is_missing_and_only_the_groups_missing(tmp_path):
    path = _surface(tmp_path)
    h5io.update_surface_file(path, groups=[TRAIN], results={"train_loss": (np.arange(10), np.zeros(10)),
                                                           "train_acc": (np.arange(10), np.zeros(10))})
    rec = Recorder()
    results = run_ranks(2, lambda w: run_grid(world=w, surf_file=path, groups=[TRAIN, TEST],
                                              evaluate_points=rec.for_rank(w.rank), flush_secs=1e9,
                                              progress=False))
    needs = {index: n for _, index, n in rec.calls}
    assert sorted(needs) == list(range(NX * NY))
    assert all(needs[k] == ("test",) for k in range(10))
    assert all(needs[k] == ("train", "test") for k in range(10, NX * NY))
    assert results[0].already_done == 0 and results[0].computed == NX * NY
    surface = h5io.read_surface_file(path)
    assert np.all(surface.arrays["train_loss"].reshape(-1)[:10] == 0)  # kept, not recomputed
    assert surface.done_mask(TEST).all()


def test_only_computes_the_points_of_a_shard(tmp_path):
    path = _surface(tmp_path)
    mine = np.arange(1, NX * NY, 4)
    rec = Recorder()
    results = run_ranks(3, lambda w: run_grid(world=w, surf_file=path, groups=[TRAIN],
                                              evaluate_points=rec.for_rank(w.rank), progress=False, only=mine))
    assert sorted(index for _, index, _ in rec.calls) == mine.tolist()
    assert results[0].computed == len(mine)
    assert np.array_equal(np.flatnonzero(h5io.read_surface_file(path).done_mask(TRAIN)), mine)
