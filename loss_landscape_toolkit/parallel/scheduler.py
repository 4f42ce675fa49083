"""Which grid points remain, in which order, and how they are handed out. Pure functions.

Points are numbered by their flat index ``k = iy * nx + ix`` (1D: ``k = ix``), the order of
the reference code and of our arrays. Points are handed out one at a time from a shared queue
(self-scheduling), so a rank that draws expensive points simply takes fewer of them; nobody
waits for a precomputed share to finish (the reference split the list into contiguous chunks
and ran every rank in lockstep).
"""
from __future__ import annotations

from collections import deque
from typing import Mapping, Sequence

import numpy as np

__all__ = [
    "WorkItem",
    "remaining_points",
    "point_coordinates",
    "shard_points",
    "WorkQueue",
]

WorkItem = tuple[int, tuple[str, ...]]  # (flat index, names of the metric groups to compute)


def remaining_points(done: Mapping[str, np.ndarray]) -> list[WorkItem]:
    """Every point that some group still lacks, with the groups it lacks, by flat index.

    Args:
        done: ``{group name: bool array}`` (all the same shape), True where computed.
    """
    names = list(done)
    if not names:
        return []
    flat = np.stack([np.asarray(done[n], dtype=bool).reshape(-1) for n in names])  # (G, P)
    todo = np.flatnonzero(~flat.all(axis=0))
    return [(int(k), tuple(n for g, n in enumerate(names) if not flat[g, k])) for k in todo]


def point_coordinates(index: int, xcoordinates: np.ndarray,
                      ycoordinates: np.ndarray | None) -> tuple[float, ...]:
    """(x,) or (x, y) of flat point ``index``."""
    nx = len(xcoordinates)
    if ycoordinates is None:
        return (float(xcoordinates[index]),)
    return (float(xcoordinates[index % nx]), float(ycoordinates[index // nx]))


def shard_points(npoints: int, rank: int, nshards: int) -> np.ndarray:
    """Flat indices of shard ``rank`` of ``nshards``: every ``nshards``-th point from ``rank``, so
    cost that varies smoothly across the grid spreads evenly over the shards. The share depends
    on the grid alone, never on which points are done when a shard starts."""
    if not 0 <= rank < nshards:
        raise ValueError(f"rank must be in [0, {nshards}), got {rank}")
    return np.arange(rank, npoints, nshards, dtype=np.int64)


class WorkQueue:
    """A first-in first-out queue of work items, handed out in small pieces."""

    def __init__(self, items: Sequence[WorkItem]):
        self._items: deque[WorkItem] = deque(items)

    def __len__(self) -> int:
        return len(self._items)

    def take(self, n: int = 1) -> list[WorkItem]:
        """Up to ``n`` items; an empty list means the queue is exhausted."""
        return [self._items.popleft() for _ in range(min(n, len(self._items)))]
