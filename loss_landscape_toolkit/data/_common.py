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
        x: Inputs, shape ``(N, C, H, W)`` (``(N, ...)`` for custom datasets), float32, already
            normalized unless loaded with ``raw_data=True``.
        y: Class labels, shape ``(N,)``, int64.
        num_classes: Number of classes.
        description: One line for logs and HDF5 provenance.

    Instances compare by identity (comparing tensors element-wise has no single truth value).
    """

    x: torch.Tensor
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
        x: Raw inputs ``(N, C, H, W)`` (``(N, ...)`` for custom datasets), float32: in [0, 1]
            for cifar10 and digits, as returned by the dataset for custom ones.
        y: Class labels ``(N,)``, int64.
        mean: Per-channel mean, float32 ``(C,)``, or None when nothing is normalized
            (``raw_data``, custom datasets).
        std: Per-channel standard deviation, float32 ``(C,)``, or None with ``mean``.
        num_classes: Number of classes.
        description: One line for logs.
    """

    x: torch.Tensor
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


_PAIR_FIX = "each item must be an (x, y) pair with x a float tensor (e.g. ToTensor()) and y an int label"


def _checked_pair(batch: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``(x, y)`` batch: float inputs and one integer label per input."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise DataError(f"{what} yielded {type(batch).__name__} items, expected (x, y) pairs; {_PAIR_FIX}")
    bx, by = batch
    if not isinstance(bx, torch.Tensor) or not bx.is_floating_point():
        kind = bx.dtype if isinstance(bx, torch.Tensor) else type(bx).__name__
        raise DataError(f"{what} yielded x of type {kind}, expected a float tensor; {_PAIR_FIX}")
    if not isinstance(by, torch.Tensor):
        by = torch.as_tensor(by)
    if by.dtype == torch.bool or by.is_floating_point() or by.is_complex() or by.ndim != 1:
        raise DataError(
            f"{what} yielded labels of dtype {by.dtype} and shape {tuple(by.shape)}, "
            f"expected integer class labels (one per item); {_PAIR_FIX}"
        )
    if by.shape[0] != bx.shape[0]:
        raise DataError(f"{what} yielded {bx.shape[0]} inputs with {by.shape[0]} labels; {_PAIR_FIX}")
    return bx, by


def _collect_batches(
    batches: Iterable[Any], what: str, expected: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate (x, y) batches into float32 x and int64 y, preallocating when size is known."""
    x_out: torch.Tensor | None = None
    x_list: list[torch.Tensor] = []
    y_list: list[torch.Tensor] = []
    shape: tuple[int, ...] | None = None
    count = 0
    try:
        for batch in batches:
            bx, by = _checked_pair(batch, what)
            if shape is not None and tuple(bx.shape[1:]) != shape:
                raise DataError(f"{what} yielded inputs of shape {tuple(bx.shape[1:])} after {shape}; "
                                f"all inputs must have one shape")
            shape, n = tuple(bx.shape[1:]), bx.shape[0]
            if expected is None:
                x_list.append(bx.detach().to(torch.float32, copy=True))
            else:
                if count + n > expected:
                    raise DataError(f"{what} yielded more than its len() of {expected} items")
                if x_out is None:
                    x_out = torch.empty((expected, *shape), dtype=torch.float32)
                x_out[count:count + n].copy_(bx)
            y_list.append(by.to(torch.int64))
            count += n
    except DataError:
        raise
    except Exception as exc:  # errors raised by the user's dataset, transforms or collation
        raise DataError(f"reading {what} failed ({one_line(exc)}); {_PAIR_FIX}") from None
    if count == 0:
        raise DataError(f"{what} is empty; expected at least one (x, y) item")
    if expected is not None and count != expected:
        raise DataError(f"{what} yielded {count} items but its len() is {expected}")
    x = torch.cat(x_list) if expected is None else x_out
    y = torch.cat(y_list)
    if int(y.min()) < 0:
        raise DataError(f"{what} has negative label {int(y.min())}; expected class labels 0..C-1")
    return x, y


def _num_classes(ds: Any, y: torch.Tensor, what: str) -> int:
    """``len(ds.classes)`` when the dataset has such a list (checked against the labels), else
    the largest label + 1."""
    classes = getattr(ds, "classes", None)
    top = int(y.max()) + 1
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
