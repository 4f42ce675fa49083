"""Custom datasets: ``path/to/file.py:function`` or ``pkg.module:function`` returning Datasets.

The function is called with no arguments and returns ``(train, test)`` torch Datasets of
``(x, y)`` pairs or of dicts of tensors (``test`` may be None): x of any dtype and shape; in a
dict the target key (``labels`` unless told otherwise) is the target and the other keys are the
model's keyword arguments. The chosen split is read once, in file order, through a
``DataLoader`` and kept as tensors, exactly as the dataset returns them (no normalization added).
A file's folder is on ``sys.path`` while it is imported, called and read, so it can import its
sibling modules.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch

from .._imports import import_object, on_sys_path
from ..errors import DataError, one_line
from ._common import EvalData, _collect_batches, _num_classes
from .splits import _part_text, split_indices

_CUSTOM_BATCH_SIZE = 256


def _is_dataset(obj: Any) -> bool:
    return isinstance(obj, torch.utils.data.Dataset) or (
        hasattr(obj, "__getitem__") and hasattr(obj, "__len__")
    )


def _sized_len(obj: Any) -> int | None:
    if isinstance(obj, torch.utils.data.IterableDataset):
        with contextlib.suppress(TypeError):
            return len(obj)
        return None
    try:
        return len(obj)
    except TypeError:
        return None


def _dataset_split(spec: str, split: str) -> tuple[Any, str | None]:
    """The ``split`` Dataset returned by the user's function, and the folder to keep on sys.path."""
    func, folder = import_object(spec, kind="custom dataset", error=DataError)
    try:
        with on_sys_path(folder):
            result = func()
    except Exception as exc:
        raise DataError(f"custom dataset function {spec!r} raised {one_line(exc)}") from None
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise DataError(
            f"custom dataset function {spec!r} returned {type(result).__name__}, expected a pair "
            f"(train, test) of torch Datasets (test may be None)"
        )
    ds = result[0] if split == "train" else result[1]
    if ds is None:
        raise DataError(
            f"custom dataset {spec!r} has no {split} split (its function returned None for it); "
            f"return a Dataset there or use split 'train'"
        )
    if not _is_dataset(ds):
        raise DataError(
            f"custom dataset {spec!r} returned a {type(ds).__name__} as its {split} split, expected "
            f"a torch Dataset yielding (x, y) pairs"
        )
    return ds, folder


def _load_custom(spec: str, split: str, data_split: int, split_idx: int, target_key: str = "labels") -> EvalData:
    ds, folder = _dataset_split(spec, split)
    what = f"custom dataset {spec!r} ({split} split)"
    total = _sized_len(ds)
    if total == 0:
        raise DataError(f"{what} is empty; expected at least one (x, y) item")
    source: Any = ds
    if total is not None:
        idx = split_indices(total, data_split, split_idx)
        if data_split > 1:
            source = torch.utils.data.Subset(ds, idx.tolist())
        expected: int | None = len(idx)
    else:
        expected = None
    try:
        loader = torch.utils.data.DataLoader(source, batch_size=_CUSTOM_BATCH_SIZE, shuffle=False)
    except Exception as exc:
        raise DataError(f"{what} cannot be batched by a DataLoader ({one_line(exc, 200)})") from None
    with on_sys_path(folder):
        x, y = _collect_batches(loader, what, expected, target_key)
    if total is None:
        total = len(y)
        idx = split_indices(total, data_split, split_idx)
        if data_split > 1:
            rows = torch.from_numpy(idx)
            x = {k: v[rows] for k, v in x.items()} if isinstance(x, dict) else x[rows]
            y = y[rows]
    return EvalData(
        x=x,
        y=y,
        num_classes=_num_classes(ds, y, what),
        description=(
            f"custom dataset {spec} {split} split, {_part_text(data_split, split_idx, len(y), total, 'items')}, "
            f"as returned by the dataset (no normalization added)"
        ),
    )
