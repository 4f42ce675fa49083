"""Remaining points, their coordinates, shards and the work queue (pure functions)."""
from __future__ import annotations

import numpy as np
import pytest

from loss_landscape_toolkit.parallel.scheduler import WorkQueue, point_coordinates, remaining_points, shard_points


def test_remaining_points_lists_missing_groups_per_point():
    train = np.array([[True, False, True], [False, True, True]])
    test = np.array([[True, True, False], [False, True, True]])
    assert remaining_points({"train": train, "test": test}) == [
        (1, ("train",)), (2, ("test",)), (3, ("train", "test"))]
    assert remaining_points({"train": np.ones((2, 2), bool)}) == []
    assert remaining_points({}) == []


def test_point_coordinates_follow_flat_order():
    x, y = np.array([-1.0, 0.0, 1.0]), np.array([10.0, 20.0])
    assert [point_coordinates(k, x, y) for k in range(6)] == [
        (-1.0, 10.0), (0.0, 10.0), (1.0, 10.0), (-1.0, 20.0), (0.0, 20.0), (1.0, 20.0)]
    assert point_coordinates(2, x, None) == (1.0,)


@pytest.mark.parametrize("n, nshards", [(10, 3), (3, 5), (0, 2), (7, 1)])
def test_shards_partition_the_grid(n, nshards):
    parts = [shard_points(n, r, nshards) for r in range(nshards)]
    assert sorted(int(k) for p in parts for k in p) == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    with pytest.raises(ValueError):
        shard_points(n, nshards, nshards)


def test_work_queue():
    q = WorkQueue([(k, ()) for k in range(5)])
    assert q.take(2) == [(0, ()), (1, ())] and len(q) == 3
    assert q.take(10) == [(2, ()), (3, ()), (4, ())]
    assert q.take(1) == []
