"""Choosing part ``split_idx`` of ``data_split`` disjoint random parts of a dataset.

The reference code drew overlapping parts from an unseeded random subset; here one fixed
permutation is cut into disjoint parts, so the parts of a distributed evaluation cover each
item at most once and are the same in every process and run.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError


def _check_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataError(f"{name} must be an integer, got {value!r}; pass a whole number")
    return int(value)


def _check_split_args(data_split: Any, split_idx: Any) -> tuple[int, int]:
    data_split = _check_int(data_split, "data_split")
    split_idx = _check_int(split_idx, "split_idx")
    if data_split < 1:
        raise DataError(
            f"data_split must be >= 1 (the number of disjoint parts to cut the data into), "
            f"got {data_split}; use 1 to evaluate on all data"
        )
    if not 0 <= split_idx < data_split:
        raise DataError(
            f"split_idx must satisfy 0 <= split_idx < data_split, got split_idx={split_idx} "
            f"with data_split={data_split}; pick a part between 0 and {data_split - 1}"
        )
    return data_split, split_idx


def split_indices(n: int, data_split: int, split_idx: int, *, seed: int = 0) -> np.ndarray:
    """Indices of part ``split_idx`` out of ``data_split`` disjoint random parts of ``range(n)``.

    One fixed permutation of ``range(n)`` (a numpy ``Generator`` seeded with ``seed``, independent
    of any global random state) is cut into ``data_split`` parts of ``n // data_split`` indices
    each; the remainder is dropped. The chosen part is returned sorted ascending. With
    ``data_split == 1`` all indices are returned in order. (The reference code drew each part
    from an unseeded random subset, so parts overlapped and differed between runs.)

    Args:
        n: Number of items.
        data_split: Number of parts K (>= 1).
        split_idx: Which part, ``0 <= split_idx < data_split``.
        seed: Seed of the permutation; every caller must use the same one for parts to be disjoint.

    Returns:
        int64 array of ``n // data_split`` indices, ascending.

    Raises:
        DataError: On non-integer arguments, ``data_split < 1``, ``split_idx`` out of range, or
            ``n // data_split < 1`` (a part would be empty).
    """
    n = _check_int(n, "the number of items")
    data_split, split_idx = _check_split_args(data_split, split_idx)
    if n < 0:
        raise DataError(f"the number of items must be >= 0, got {n}")
    if n == 0:
        raise DataError("the data is empty (0 items), so there is nothing to split or evaluate")
    size = n // data_split
    if size < 1:
        raise DataError(
            f"cannot cut {n} items into data_split={data_split} non-empty parts "
            f"(n // data_split = {size}); use data_split <= {n}"
        )
    if data_split == 1:
        return np.arange(n, dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(n)
    part = perm[split_idx * size:(split_idx + 1) * size]
    return np.sort(part).astype(np.int64, copy=False)


def _part_text(data_split: int, split_idx: int, used: int, total: int, noun: str = "images") -> str:
    """How much of the data a description covers: all of it, or which part of how many."""
    if data_split == 1:
        return f"{used} {noun}"
    return f"part split_idx={split_idx} of data_split={data_split}: {used} of {total} {noun}"
