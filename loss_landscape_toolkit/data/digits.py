"""The scikit-learn digits: 1,797 real 8x8 images upsampled to 3x32x32, split and normalized.

They are embedded in scikit-learn (no download), so every CIFAR model can be tried on real
images in demos and tests. A fixed seeded permutation holds out 360 images as the test split;
both splits are normalized with the per-channel statistics of the train split.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from ._common import EvalData, normalize_
from .splits import _part_text, split_indices

_DIGITS_TEST_SIZE = 360
_DIGITS_SIZE = 32


@functools.lru_cache(maxsize=1)
def _digits_base() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as read-only float32 (N, 32, 32) in [0, 1] and int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.from_numpy(np.asarray(digits.images, dtype=np.float32) / 16.0).unsqueeze(1)
    big = torch.nn.functional.interpolate(
        small, size=(_DIGITS_SIZE, _DIGITS_SIZE), mode="bilinear", align_corners=False
    )
    images = big.squeeze(1).numpy()
    labels = np.asarray(digits.target, dtype=np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _digits_parts(n: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(0).permutation(n)
    return np.sort(perm[_DIGITS_TEST_SIZE:]), np.sort(perm[:_DIGITS_TEST_SIZE])


@functools.lru_cache(maxsize=1)
def _digits_stats() -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (float32, computed in float64) of the digits train split, the
    normalization of both its evaluation and its training data."""
    images, labels = _digits_base()
    train_idx, _ = _digits_parts(len(labels))
    train = torch.from_numpy(images[train_idx]).unsqueeze(1).expand(-1, 3, -1, -1).double()
    return train.mean(dim=(0, 2, 3)).float(), train.std(dim=(0, 2, 3), correction=0).float()


def _load_digits(split: str, raw_data: bool, data_split: int, split_idx: int) -> EvalData:
    images, labels = _digits_base()
    train_idx, test_idx = _digits_parts(len(labels))
    chosen = train_idx if split == "train" else test_idx
    part = split_indices(len(chosen), data_split, split_idx)
    sel = chosen[part]
    x = torch.from_numpy(images[sel]).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(labels[sel].copy())
    if raw_data:
        scale = "raw [0, 1]"
    else:
        mean, std = _digits_stats()
        normalize_(x, mean, std)
        scale = f"normalized with train mean {mean[0].item():.4f} and std {std[0].item():.4f}"
    return EvalData(
        x=x,
        y=y,
        num_classes=10,
        description=(
            f"digits (scikit-learn 8x8 handwritten digits upsampled to 3x32x32) {split} split, "
            f"{_part_text(data_split, split_idx, len(y), len(chosen))}, {scale}"
        ),
    )
