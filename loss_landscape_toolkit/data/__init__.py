"""Evaluation data for loss-landscape computations, loaded once per process into tensors.

Every grid point of a loss surface is a full forward pass over the evaluation data, so the data
is read once, converted and normalized once, and handed out as two plain tensors
(:class:`EvalData`). No ``DataLoader``, image decoding or transforms run per grid point.

Datasets (see :func:`load_eval_data`):

* ``cifar10``: the real CIFAR-10 "python version" batch files, read with a restricted unpickler
  (no md5 check, so small hand-made files in the real format work too). A
  ``cifar-10-python.tar.gz`` next to them is extracted safely; when the files are missing, one
  download through torchvision is tried and, if it fails, the error says where to put which file.
  Without a ``datapath`` they are looked for where :func:`resolve_datapath` says.
* ``digits``: scikit-learn's embedded 8x8 handwritten digits (1,797 real images, no download),
  upsampled to 3x32x32 so every CIFAR model runs on it. For demos and tests.
* ``path/to/file.py:function`` or ``pkg.module:function``: a user function returning
  ``(train, test)`` torch Datasets of ``(x, y)`` pairs or dicts of tensors.

``data_split``/``split_idx`` select one of K disjoint random parts of the data (the reference code
used overlapping parts; see :func:`split_indices`).
"""
from __future__ import annotations

import torch

from .._imports import is_spec
from ..errors import DataError
from ._common import EvalData, TrainingData, normalize_
from .cifar10 import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DATAPATH_ENV,
    DEFAULT_DATAPATH,
    _load_cifar10,
    read_cifar10_arrays,
    resolve_datapath,
)
from .custom import _load_custom
from .digits import _digits_stats, _load_digits
from .pickled import load_pickled_loader
from .splits import _check_split_args, split_indices

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATAPATH_ENV",
    "DEFAULT_DATAPATH",
    "EvalData",
    "list_datasets",
    "load_eval_data",
    "read_cifar10_arrays",
    "load_pickled_loader",
    "resolve_datapath",
    "split_indices",
    "TrainingData",
    "load_training_data",
    "normalize_",
]

_SPLITS = ("train", "test")
_BUILTIN_DATASETS = ("cifar10", "digits")
_CUSTOM_SYNTAX = "'path/to/file.py:function' or 'pkg.module:function'"


def list_datasets() -> list[str]:
    """Names of the built-in datasets.

    Returns:
        ``["cifar10", "digits"]``. Custom datasets are given as ``path/to/file.py:function`` or
        ``pkg.module:function`` instead of a name.
    """
    return list(_BUILTIN_DATASETS)


def _unknown_dataset_message(dataset: str) -> str:
    choices = (
        f"expected one of {', '.join(list_datasets())}, or a custom dataset given as "
        f"{_CUSTOM_SYNTAX} (a function returning (train, test) torch Datasets)"
    )
    if dataset.strip().lower() == "imagenet":
        return (
            f"dataset 'imagenet' is not supported (the reference code advertised it but never "
            f"implemented it); {choices}"
        )
    return f"unknown dataset {dataset!r}; {choices}"


def load_eval_data(
    dataset: str,
    *,
    split: str = "train",
    datapath: str | None = None,
    raw_data: bool = False,
    data_split: int = 1,
    split_idx: int = 0,
    download: bool = True,
    target_key: str = "labels",
) -> EvalData:
    """Load one split of a dataset into memory as tensors, converted and normalized once.

    Args:
        dataset: ``"cifar10"``, ``"digits"`` (names are case-insensitive), or a custom dataset
            ``"path/to/file.py:function"`` / ``"pkg.module:function"`` where ``function()``
            returns ``(train, test)`` torch Datasets of ``(x, y)`` pairs (``test`` may be None).
            A file's folder is on ``sys.path`` while it is imported, called and read.
        split: ``"train"`` or ``"test"``.
        datapath: CIFAR-10 only: the folder holding ``cifar-10-batches-py/`` (or
            ``cifar-10-python.tar.gz``, which is then extracted), or that folder itself. None
            looks where :func:`resolve_datapath` says (``$LANDSCAPE_DATAPATH``, else
            ``cifar10/data`` or ``data`` in the working folder), as the command-line programs do.
        raw_data: Skip normalization (inputs stay in [0, 1]). CIFAR-10 uses
            :data:`CIFAR10_MEAN`/:data:`CIFAR10_STD`; digits uses the per-channel mean and std
            of its train split for both splits. No effect on custom datasets, which own their
            transforms and are never normalized here.
        data_split: Cut the split into this many disjoint random parts (see
            :func:`split_indices`); 1 keeps all data in file order.
        split_idx: Which part to load, ``0 <= split_idx < data_split``.
        download: CIFAR-10 only: when the files are missing, try one torchvision download into
            ``datapath`` before giving up.
        target_key: custom datasets of dict items: the key of the target (the other keys are
            the model's keyword arguments).

    Returns:
        :class:`EvalData`: float32 inputs and int64 labels for the built-in datasets; for
        custom ones, inputs of the dataset's dtypes (floating as float32, or a dict of
        tensors) and int64 class or float32 real-valued targets.

    Raises:
        ValueError: If ``split`` is not ``"train"`` or ``"test"`` (a programming error).
        DataError: On an unknown dataset, bad ``data_split``/``split_idx``, missing or corrupt
            files (the message says where to put which file), or a custom dataset that cannot
            be imported, called or converted.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    data_split, split_idx = _check_split_args(data_split, split_idx)
    if not isinstance(dataset, str) or not dataset.strip():
        raise DataError(_unknown_dataset_message(str(dataset)))
    if is_spec(dataset):
        return _load_custom(dataset, split, data_split, split_idx, target_key)
    name = dataset.strip().lower()
    if name == "cifar10":
        return _load_cifar10(split, datapath, raw_data, data_split, split_idx, download)
    if name == "digits":
        return _load_digits(split, raw_data, data_split, split_idx)
    raise DataError(_unknown_dataset_message(dataset))


def load_training_data(
    dataset: str,
    *,
    datapath: str | None = None,
    raw_data: bool = False,
    download: bool = True,
    target_key: str = "labels",
) -> TrainingData:
    """Load the training split unnormalized, plus the constants to normalize it after augmentation.

    Args:
        dataset: As :func:`load_eval_data`: ``"cifar10"``, ``"digits"`` or a custom spec.
        datapath: CIFAR-10 folder, as :func:`load_eval_data`.
        raw_data: Never normalize (``mean``/``std`` None), like ``load_eval_data(raw_data=True)``.
        download: CIFAR-10 only: try one torchvision download when the files are missing.
        target_key: as :func:`load_eval_data`.

    Returns:
        :class:`TrainingData`. Its constants are CIFAR-10's fixed ones for cifar10, the
        statistics of the digits train split for digits (what :func:`load_eval_data` uses for
        both digits splits), and None for custom datasets, which are never normalized here.

    Raises:
        DataError: As :func:`load_eval_data`.
    """
    data = load_eval_data(dataset, split="train", datapath=datapath, raw_data=True, download=download,
                          target_key=target_key)
    mean = std = None
    name = dataset.strip().lower()
    if not raw_data and name == "cifar10":
        mean = torch.tensor(CIFAR10_MEAN, dtype=torch.float32)
        std = torch.tensor(CIFAR10_STD, dtype=torch.float32)
    elif not raw_data and name == "digits":
        mean, std = _digits_stats()  # the train split's own statistics, as for evaluation
    if mean is None:
        description = data.description
    else:
        values = ", ".join(f"{m:.4f}/{s:.4f}" for m, s in zip(mean.tolist(), std.tolist()))
        description = f"{data.description}, normalized after augmentation (mean/std per channel {values})"
    return TrainingData(x=data.x, y=data.y, mean=mean, std=std, num_classes=data.num_classes,
                        description=description)
