"""The in-memory data types, normalization, and the conversion of (x, y) batches into tensors.

Shared by every dataset module: :class:`EvalData` and :class:`TrainingData` are what the loaders
return, :func:`normalize_` is the one normalization both evaluation and training apply, and
:func:`_collect_batches` turns what a user's Dataset or a pickled DataLoader yields into tensors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import torch

from ..errors import DataError, one_line


@dataclass(frozen=True, eq=False)
class EvalData:
    """Evaluation data held in memory, ready to be fed to a model.

    Attributes:
        x: Inputs, shape ``(N, C, H, W)`` float32, already normalized unless loaded with
            ``raw_data=True``. Custom datasets: ``(N, ...)`` of any dtype (floating ones as
            float32), or a dict of such tensors (the model's keyword arguments).
        y: Targets ``(N,)`` or ``(N, ...)``: int64 class labels (-100: a position to skip), or
            float32 real values (regression).
        num_classes: Number of classes (0 for real-valued targets).
        description: One line for logs and HDF5 provenance.

    Instances compare by identity (comparing tensors element-wise has no single truth value).
    """

    x: torch.Tensor | dict[str, torch.Tensor]
    y: torch.Tensor
    num_classes: int
    description: str

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True, eq=False)
class TrainingData:
    """Training inputs before normalization, with the constants that normalize them.

    The reference's training transforms pad, crop and flip the raw image and normalize
    afterwards, so the padding is black (0) in raw space. Training code augments batches of
    ``x`` and then calls :func:`normalize_`, which gives bit for bit what :func:`load_eval_data`
    returns for the same (unaugmented) images.

    Attributes:
        x: Raw inputs ``(N, C, H, W)`` float32 in [0, 1] for cifar10 and digits; for custom
            datasets as :class:`EvalData` holds them (any dtype, or a dict of tensors).
        y: Targets, as :class:`EvalData`'s.
        mean: Per-channel mean, float32 ``(C,)``, or None when nothing is normalized
            (``raw_data``, custom datasets).
        std: Per-channel standard deviation, float32 ``(C,)``, or None with ``mean``.
        num_classes: Number of classes.
        description: One line for logs.
    """

    x: torch.Tensor | dict[str, torch.Tensor]
    y: torch.Tensor
    mean: torch.Tensor | None
    std: torch.Tensor | None
    num_classes: int
    description: str

    def __len__(self) -> int:
        return int(self.y.shape[0])


def normalize_(x: torch.Tensor, mean: torch.Tensor | None, std: torch.Tensor | None) -> torch.Tensor:
    """Normalize a batch ``(B, C, H, W)`` in place, per channel: ``(x - mean) / std``.

    The same float32 operations, in the same order, as :func:`load_eval_data` uses, so the
    results are identical. ``mean`` None leaves ``x`` unchanged.

    Returns:
        ``x`` itself.
    """
    if mean is None or std is None:
        return x
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return x.sub_(mean.to(x.device).view(shape)).div_(std.to(x.device).view(shape))


_PAIR_FIX = ("each item must be an (x, y) pair of tensors (x of any dtype, or a dict of tensors passed "
             "as keyword arguments), or a dict of tensors holding the target under the target key")
IGNORE_INDEX = -100  # integer targets to skip (crossentropy's ignore_index)


def _item_parts(batch: Any, what: str, target_key: str) -> tuple[Any, Any]:
    """Inputs and targets of one collated batch: ``(x, y)``, or a dict whose ``target_key``
    entry is the target and whose other entries are the inputs."""
    if isinstance(batch, dict):
        if target_key not in batch:
            raise DataError(f"{what} yielded dict items with keys {sorted(batch)[:8]} but no target "
                            f"{target_key!r}; name the target's key with --target_key")
        inputs = {key: value for key, value in batch.items() if key != target_key}
        if not inputs:
            raise DataError(f"{what} yielded dict items holding only the target {target_key!r}; "
                            f"the other keys are the model's inputs")
        return inputs, batch[target_key]
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise DataError(f"{what} yielded {type(batch).__name__} items, expected (x, y) pairs or "
                        f"dicts; {_PAIR_FIX}")
    return batch[0], batch[1]


def _checked_pair(batch: Any, what: str, target_key: str = "labels") -> tuple[Any, torch.Tensor]:
    """One ``(inputs, targets)`` batch: tensors (or a dict of tensors) with one item per target
    along the first dimension; integer targets are class indices (-100: skipped), floating
    targets real values."""
    bx, by = _item_parts(batch, what, target_key)
    tensors = bx.items() if isinstance(bx, dict) else [("x", bx)]
    for key, value in tensors:
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            kind = f"a {value.dtype} scalar" if isinstance(value, torch.Tensor) else type(value).__name__
            raise DataError(f"{what} yielded input {key!r} of type {kind}, expected a tensor per item; {_PAIR_FIX}")
    if not isinstance(by, torch.Tensor):
        by = torch.as_tensor(by)
    if by.dtype == torch.bool or by.is_complex() or by.ndim == 0:
        raise DataError(f"{what} yielded targets of dtype {by.dtype} and shape {tuple(by.shape)}, expected "
                        f"integer class labels or real values, one entry per item; {_PAIR_FIX}")
    for key, value in tensors:
        if value.shape[0] != by.shape[0]:
            raise DataError(f"{what} yielded {value.shape[0]} inputs ({key!r}) with {by.shape[0]} targets; {_PAIR_FIX}")
    return bx, by


def _as_stored(t: torch.Tensor) -> torch.Tensor:
    """Floating tensors as float32 (the models' dtype); others as they are."""
    return t.detach().to(torch.float32, copy=True) if t.is_floating_point() else t.detach().clone()


def _cat(parts: list[Any]) -> Any:
    if isinstance(parts[0], dict):
        return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
    return torch.cat(parts)


def _collect_batches(batches: Iterable[Any], what: str, expected: int | None,
                     target_key: str = "labels") -> tuple[Any, torch.Tensor]:
    """Concatenate (inputs, targets) batches: inputs a tensor (float32 if floating) or a dict of
    tensors, targets int64 class indices or float32 values."""
    xs: list[Any] = []
    ys: list[torch.Tensor] = []
    shape: object = None
    count = 0
    try:
        for batch in batches:
            bx, by = _checked_pair(batch, what, target_key)
            bx = {k: _as_stored(v) for k, v in bx.items()} if isinstance(bx, dict) else _as_stored(bx)
            item = ({k: (v.dtype, tuple(v.shape[1:])) for k, v in bx.items()} if isinstance(bx, dict)
                    else (bx.dtype, tuple(bx.shape[1:])))
            target = (by.is_floating_point(), tuple(by.shape[1:]))
            if shape is not None and (item, target) != shape:
                raise DataError(f"{what} yielded items of shape {item} / targets {target} after {shape[0]} / "
                                f"{shape[1]}; all items must have one shape and dtype")
            shape = (item, target)
            n = by.shape[0]
            if expected is not None and count + n > expected:
                raise DataError(f"{what} yielded more than its len() of {expected} items")
            xs.append(bx)
            ys.append(by.to(torch.float32) if by.is_floating_point() else by.to(torch.int64))
            count += n
    except DataError:
        raise
    except Exception as exc:  # errors raised by the user's dataset, transforms or collation
        raise DataError(f"reading {what} failed ({one_line(exc)}); {_PAIR_FIX}") from None
    if count == 0:
        raise DataError(f"{what} is empty; expected at least one (x, y) item")
    if expected is not None and count != expected:
        raise DataError(f"{what} yielded {count} items but its len() is {expected}")
    x, y = _cat(xs), torch.cat(ys)
    if not y.is_floating_point():
        labels = y[y != IGNORE_INDEX]
        if labels.numel() and int(labels.min()) < 0:
            raise DataError(f"{what} has negative label {int(labels.min())}; expected class labels 0..C-1 "
                            f"({IGNORE_INDEX} marks a target to skip)")
    return x, y


def _num_classes(ds: Any, y: torch.Tensor, what: str) -> int:
    """``len(ds.classes)`` when the dataset has such a list (checked against the labels), else
    the largest label + 1; 0 for real-valued targets (regression)."""
    if y.is_floating_point():
        return 0
    classes = getattr(ds, "classes", None)
    labels = y[y != IGNORE_INDEX]
    top = int(labels.max()) + 1 if labels.numel() else 1
    if classes is None:
        return top
    try:
        num = len(classes)
    except TypeError:
        return top
    if top > num:
        raise DataError(
            f"{what} has label {top - 1} but only {num} entries in .classes; labels must be "
            f"0..{num - 1}"
        )
    return num
