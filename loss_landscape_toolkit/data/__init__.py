"""Evaluation data for loss-landscape computations, loaded once per process into tensors.

Every grid point of a loss surface is a full forward pass over the evaluation data, so the data
is read once, converted and normalized once, and handed out as two plain tensors
(:class:`EvalData`). No ``DataLoader``, image decoding or transforms run per grid point.

Datasets (see :func:`load_eval_data`):

* ``cifar10``: the real CIFAR-10 "python version" batch files, read with a restricted unpickler
  (no md5 check, so small hand-made files in the real format work too). A
  ``cifar-10-python.tar.gz`` next to them is extracted safely; when the files are missing, one
  download through torchvision is tried and, if it fails, the error says where to put which file.
* ``digits``: scikit-learn's embedded 8x8 handwritten digits (1,797 real images, no download),
  upsampled to 3x32x32 so every CIFAR model runs on it. For demos and tests.
* ``path/to/file.py:function`` or ``pkg.module:function``: a user function returning
  ``(train, test)`` torch Datasets.

``data_split``/``split_idx`` select one of K disjoint random parts of the data (the reference code
used overlapping parts; see :func:`split_indices`).
"""
from __future__ import annotations

import codecs
import contextlib
import functools
import hashlib
import importlib
import importlib.util
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from ..errors import DataError

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "EvalData",
    "list_datasets",
    "load_eval_data",
    "read_cifar10_arrays",
    "load_pickled_loader",
    "split_indices",
    "TrainingData",
    "load_training_data",
    "normalize_",
]

# Per-channel statistics the reference code normalizes CIFAR-10 with (on the [0, 1] scale).
CIFAR10_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR10_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)

_SPLITS = ("train", "test")
_BUILTIN_DATASETS = ("cifar10", "digits")

_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_FILES = ("test_batch",)
_CIFAR_IMAGE_BYTES = 3 * 32 * 32
_CIFAR_NUM_CLASSES = 10

_DIGITS_TEST_SIZE = 360
_DIGITS_SIZE = 32

_CUSTOM_SYNTAX = "'path/to/file.py:function' or 'pkg.module:function'"
_CONVERT_CHUNK = 2048  # images per step when converting uint8 to normalized float32
_CUSTOM_BATCH_SIZE = 256


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


def list_datasets() -> list[str]:
    """Names of the built-in datasets.

    Returns:
        ``["cifar10", "digits"]``. Custom datasets are given as ``path/to/file.py:function`` or
        ``pkg.module:function`` instead of a name.
    """
    return list(_BUILTIN_DATASETS)


# --------------------------------------------------------------------------------------------
# data_split / split_idx
# --------------------------------------------------------------------------------------------


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


def _part_text(data_split: int, split_idx: int, used: int, total: int) -> str:
    if data_split == 1:
        return f"{used} images"
    return f"part split_idx={split_idx} of data_split={data_split}: {used} of {total} images"


# --------------------------------------------------------------------------------------------
# CIFAR-10 files
# --------------------------------------------------------------------------------------------


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global that CIFAR-10 batch files never need."""


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    # Python 3 pickles bytes with protocol <= 2 as _codecs.encode(text, "latin1"); only that use.
    if encoding not in ("latin1", "latin-1") or errors != "strict" or not isinstance(text, str):
        raise _RefusedGlobal(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


def _numpy_core_module(name: str) -> Any:
    try:  # numpy >= 2
        return importlib.import_module(f"numpy._core.{name}")
    except ImportError:  # pragma: no cover - numpy 1.x
        return importlib.import_module(f"numpy.core.{name}")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    multiarray = _numpy_core_module("multiarray")
    frombuffer = _numpy_core_module("numeric")._frombuffer
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    for module in ("builtins", "__builtin__"):
        for name, obj in (("set", set), ("frozenset", frozenset), ("bytearray", bytearray)):
            allowed[(module, name)] = obj
    return allowed


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that only builds containers and numpy arrays; any other global is refused."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None


def _get(batch: dict, key: str) -> Any:
    if key.encode() in batch:
        return batch[key.encode()]
    return batch.get(key)


def _read_batch_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 batch file into (uint8 (n, 3072), int64 (n,))."""
    fix = f"replace it with the file from the CIFAR-10 python version ({_CIFAR_URL})"
    try:
        with open(path, "rb") as fh:
            batch = _BatchUnpickler(fh, encoding="bytes").load()
    except _RefusedGlobal as exc:
        raise DataError(
            f"refusing to load CIFAR-10 batch file {path}: it asks for {exc}, which real CIFAR-10 "
            f"batches never need (the file is foreign or tampered with); {fix}"
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read CIFAR-10 batch file {path}: {exc}; check its permissions") from None
    except Exception as exc:  # truncated or corrupt pickles fail in many ways
        raise DataError(
            f"cannot read CIFAR-10 batch file {path} (truncated or corrupt: "
            f"{type(exc).__name__}: {exc}); {fix}"
        ) from None
    if not isinstance(batch, dict):
        raise DataError(
            f"CIFAR-10 batch file {path} holds a {type(batch).__name__}, expected a dict with "
            f"b'data' and b'labels'; {fix}"
        )
    data, labels = _get(batch, "data"), _get(batch, "labels")
    if labels is None and _get(batch, "fine_labels") is not None:
        raise DataError(f"{path} looks like a CIFAR-100 file (it has fine_labels), expected CIFAR-10; {fix}")
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(
            f"CIFAR-10 batch file {path} lacks b'data' (a uint8 array) or b'labels'; "
            f"found keys {sorted(map(repr, batch))}; {fix}"
        )
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR_IMAGE_BYTES:
        raise DataError(
            f"CIFAR-10 batch file {path}: b'data' is {data.dtype} with shape {data.shape}, "
            f"expected uint8 with shape (N, {_CIFAR_IMAGE_BYTES}); {fix}"
        )
    try:
        label_arr = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"CIFAR-10 batch file {path}: b'labels' are not integers ({exc}); {fix}") from None
    if label_arr.shape != (data.shape[0],):
        raise DataError(
            f"CIFAR-10 batch file {path} has {data.shape[0]} images but labels of shape "
            f"{label_arr.shape}, expected ({data.shape[0]},); {fix}"
        )
    if label_arr.size and (label_arr.min() < 0 or label_arr.max() >= _CIFAR_NUM_CLASSES):
        raise DataError(
            f"CIFAR-10 batch file {path} has labels from {label_arr.min()} to {label_arr.max()}, "
            f"expected 0..{_CIFAR_NUM_CLASSES - 1}; {fix}"
        )
    return data, label_arr


def _cifar_files(train: bool) -> tuple[str, ...]:
    return _CIFAR_TRAIN_FILES if train else _CIFAR_TEST_FILES


def _locate_cifar(root: Path, names: Iterable[str]) -> Path | None:
    names = tuple(names)
    for folder in (root / _CIFAR_FOLDER, root):
        if all((folder / name).is_file() for name in names):
            return folder
    return None


def _safe_members(archive: Path, tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = []
    for member in tar.getmembers():
        name = member.name
        parts = Path(name).parts
        if os.path.isabs(name) or name.startswith(("/", "\\")) or ".." in parts or ":" in name:
            raise DataError(
                f"refusing to extract {archive}: member {name!r} would land outside the folder; "
                f"use the original archive from {_CIFAR_URL}"
            )
        if not (member.isfile() or member.isdir()):
            raise DataError(
                f"refusing to extract {archive}: member {name!r} is a link or special file, which "
                f"the CIFAR-10 archive never contains; use the original archive from {_CIFAR_URL}"
            )
        members.append(member)
    return members


def _extract_archive(archive: Path, root: Path) -> None:
    """Extract a CIFAR-10 tar.gz into ``root/cifar-10-batches-py`` without overwriting files.

    Extraction goes to a private temporary folder first and files are then moved into place, so
    concurrent processes (MPI ranks) never see half-written batch files.
    """
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".cifar10-extract-", dir=root))
    except OSError as exc:
        raise DataError(
            f"cannot extract {archive} into {root.absolute()} ({_one_line(exc)}); make that folder "
            f"writable or extract the archive there yourself"
        ) from None
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = _safe_members(archive, tar)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - Python < 3.11.4; members were checked above
                    tar.extractall(tmp, members=members)
        except DataError:
            raise
        except Exception as exc:  # tarfile/gzip/zlib report damage in many ways
            raise DataError(
                f"cannot extract {archive} ({_one_line(exc)}); the archive is truncated "
                f"or corrupt: replace it with the original from {_CIFAR_URL}"
            ) from None
        source = tmp / _CIFAR_FOLDER if (tmp / _CIFAR_FOLDER).is_dir() else tmp
        target = root / _CIFAR_FOLDER
        try:
            target.mkdir(exist_ok=True)
            for item in source.iterdir():
                if item.is_file() and not (target / item.name).exists():
                    os.replace(item, target / item.name)
        except OSError as exc:
            raise DataError(
                f"cannot move the files extracted from {archive} into {target.absolute()} "
                f"({_one_line(exc)}); extract the archive there yourself"
            ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _find_cifar(root: Path, train: bool) -> Path | None:
    names = _cifar_files(train)
    folder = _locate_cifar(root, names)
    if folder is None and (root / _CIFAR_ARCHIVE).is_file():
        _extract_archive(root / _CIFAR_ARCHIVE, root)
        folder = _locate_cifar(root, names)
    return folder


def _missing_cifar_message(root: Path, train: bool, reason: str) -> str:
    root = root.absolute()
    folder = root / _CIFAR_FOLDER
    missing = [n for n in _cifar_files(train) if not (folder / n).is_file()]
    missing_text = "data_batch_1..5" if missing == list(_CIFAR_TRAIN_FILES) else ", ".join(missing)
    return (
        f"CIFAR-10 not found: expected {folder}/data_batch_1..5 and test_batch "
        f"(the \"CIFAR-10 python version\" from {_CIFAR_URL}, extracted there, or the .tar.gz "
        f"placed in {root}; datapath may also point directly at the {_CIFAR_FOLDER} folder); "
        f"missing: {missing_text}; {reason}"
    )


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _download_cifar10(root: Path, train: bool) -> str | None:
    """Try torchvision's CIFAR-10 download into ``root``; return None or a one-line failure reason."""
    try:
        import torchvision.datasets
    except Exception as exc:  # torchvision missing or broken
        return f"automatic download failed: torchvision unavailable ({_one_line(exc)})"
    try:
        with contextlib.redirect_stdout(sys.stderr):  # torchvision prints progress to stdout
            torchvision.datasets.CIFAR10(root=str(root), train=train, download=True)
    except Exception as exc:  # no network, proxy, disk full, checksum mismatch...
        return f"automatic download failed: {_one_line(exc)}"
    return None


def read_cifar10_arrays(root: str, *, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Read the CIFAR-10 python-version batches as uint8 images and int64 labels.

    Looks in ``root/cifar-10-batches-py/`` and in ``root`` itself; if neither holds the files but
    ``root/cifar-10-python.tar.gz`` exists, it is extracted first (members escaping the folder,
    links and special files are refused). Files are unpickled with a restricted unpickler that
    only builds containers and numpy arrays, and no md5 sums are checked. Nothing is downloaded.

    Args:
        root: Folder holding ``cifar-10-batches-py/`` (or the archive), or that folder itself.
        train: True for ``data_batch_1`` .. ``data_batch_5`` (in that order), False for
            ``test_batch``.

    Returns:
        ``(images, labels)``: uint8 ``(N, 32, 32, 3)`` (HWC; a strided view of the files' CHW
        layout, like torchvision's) and int64 ``(N,)``.

    Raises:
        DataError: If files are missing, truncated, corrupt, malformed, or ask the unpickler for
            anything beyond containers and numpy arrays; or if the archive is unsafe or corrupt.
    """
    path = Path(root)
    folder = _find_cifar(path, train)
    if folder is None:
        reason = "read_cifar10_arrays never downloads (load_eval_data(..., download=True) tries to)"
        raise DataError(_missing_cifar_message(path, train, reason))
    return _read_cifar_folder(folder, train)


def _read_cifar_folder(folder: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    datas, labels = [], []
    for name in _cifar_files(train):
        data, label = _read_batch_file(folder / name)
        datas.append(data)
        labels.append(label)
    data = datas[0] if len(datas) == 1 else np.concatenate(datas)
    del datas
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.concatenate(labels)


def _uint8_hwc_to_float(
    images: np.ndarray,
    indices: np.ndarray | None,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    chunk: int = _CONVERT_CHUNK,
) -> torch.Tensor:
    """Convert uint8 ``(N, H, W, C)`` images to one float32 ``(n, C, H, W)`` tensor, chunk-wise.

    The output is allocated once; each chunk is copied in, scaled by 1/255 and (if ``mean`` is
    given) normalized in place, exactly like ``ToTensor`` followed by ``Normalize``. Peak memory
    is the input plus the output plus one uint8 chunk.
    """
    n = images.shape[0] if indices is None else len(indices)
    _, h, w, c = images.shape
    out = torch.empty((n, c, h, w), dtype=torch.float32)
    mean_t = std_t = None
    if mean is not None and std is not None:
        mean_t = torch.tensor(mean, dtype=torch.float32)
        std_t = torch.tensor(std, dtype=torch.float32)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        block = images[start:stop] if indices is None else images[indices[start:stop]]
        dst = out[start:stop]
        dst.copy_(torch.from_numpy(block).permute(0, 3, 1, 2))
        dst.div_(255)
        normalize_(dst, mean_t, std_t)
    return out


def _load_cifar10(
    split: str, datapath: str, raw_data: bool, data_split: int, split_idx: int, download: bool
) -> EvalData:
    root = Path(datapath).expanduser()
    train = split == "train"
    folder = _find_cifar(root, train)
    if folder is None:
        reason = "automatic download is off (download=False)"
        if download:
            failure = _download_cifar10(root, train)
            folder = _find_cifar(root, train)
            if folder is None:
                reason = failure or "the download finished but the files are still not there"
        if folder is None:
            raise DataError(_missing_cifar_message(root, train, reason))
    images, labels = _read_cifar_folder(folder, train)
    total = images.shape[0]
    idx = split_indices(total, data_split, split_idx)
    x = _uint8_hwc_to_float(
        images,
        None if data_split == 1 else idx,
        None if raw_data else CIFAR10_MEAN,
        None if raw_data else CIFAR10_STD,
    )
    del images
    y = torch.from_numpy(labels if data_split == 1 else labels[idx].copy())
    scale = "raw [0, 1]" if raw_data else "normalized"
    return EvalData(
        x=x,
        y=y,
        num_classes=_CIFAR_NUM_CLASSES,
        description=(
            f"cifar10 {split} split, {_part_text(data_split, split_idx, len(y), total)}, "
            f"{scale}, from {folder.absolute()}"
        ),
    )


# --------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# custom datasets and pickled loaders
# --------------------------------------------------------------------------------------------


def _is_custom_spec(dataset: str) -> bool:
    return ":" in dataset


@contextlib.contextmanager
def _prepended_path(folder: str | None) -> Iterator[None]:
    if folder is None:
        yield
        return
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


def _import_custom(spec: str) -> tuple[Any, str | None]:
    """Import the module named by a custom dataset spec; return it and its folder (file form)."""
    target, _, func_name = spec.rpartition(":")
    usage = f"give a custom dataset as {_CUSTOM_SYNTAX}"
    if not target or not func_name.isidentifier():
        raise DataError(f"malformed custom dataset {spec!r}: expected {_CUSTOM_SYNTAX}; {usage}")
    is_file = target.endswith(".py") or "/" in target or os.sep in target
    if not is_file:
        try:
            return importlib.import_module(target), None
        except Exception as exc:
            raise DataError(
                f"cannot import module {target!r} for custom dataset {spec!r} ({_one_line(exc)}); "
                f"check the module name and that its package is on PYTHONPATH"
            ) from None
    path = Path(target).expanduser().absolute()
    if not path.is_file():
        raise DataError(
            f"custom dataset file not found: {path} (from {spec!r}); expected an existing Python "
            f"file; {usage}"
        )
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    module_name = f"_lossland_custom_{path.stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise DataError(f"cannot import {path} as a Python module (from {spec!r}); {usage}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        with _prepended_path(str(path.parent)):
            module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise DataError(
            f"importing {path} for custom dataset {spec!r} failed ({_one_line(exc)}); fix the "
            f"error in that file"
        ) from None
    return module, str(path.parent)


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


def _collect_batches(
    batches: Iterable[Any], what: str, expected: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate (x, y) batches into float32 x and int64 y, preallocating when size is known."""
    fix = "each item must be an (x, y) pair with x a float tensor (e.g. ToTensor()) and y an int label"
    x_out: torch.Tensor | None = None
    x_list: list[torch.Tensor] = []
    y_list: list[torch.Tensor] = []
    count = 0
    try:
        for batch in batches:
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise DataError(f"{what} yielded {type(batch).__name__} items, expected (x, y) pairs; {fix}")
            bx, by = batch
            if not isinstance(bx, torch.Tensor) or not bx.is_floating_point():
                kind = bx.dtype if isinstance(bx, torch.Tensor) else type(bx).__name__
                raise DataError(f"{what} yielded x of type {kind}, expected a float tensor; {fix}")
            if not isinstance(by, torch.Tensor):
                by = torch.as_tensor(by)
            if by.dtype == torch.bool or by.is_floating_point() or by.is_complex() or by.ndim != 1:
                raise DataError(
                    f"{what} yielded labels of dtype {by.dtype} and shape {tuple(by.shape)}, "
                    f"expected integer class labels (one per item); {fix}"
                )
            if by.shape[0] != bx.shape[0]:
                raise DataError(f"{what} yielded {bx.shape[0]} inputs with {by.shape[0]} labels; {fix}")
            n = bx.shape[0]
            if expected is not None:
                if x_out is None:
                    x_out = torch.empty((expected, *bx.shape[1:]), dtype=torch.float32)
                if tuple(bx.shape[1:]) != tuple(x_out.shape[1:]):
                    raise DataError(
                        f"{what} yielded inputs of shape {tuple(bx.shape[1:])} after "
                        f"{tuple(x_out.shape[1:])}; all inputs must have one shape"
                    )
                if count + n > expected:
                    raise DataError(f"{what} yielded more than its len() of {expected} items")
                x_out[count:count + n].copy_(bx)
            else:
                if x_list and tuple(bx.shape[1:]) != tuple(x_list[0].shape[1:]):
                    raise DataError(
                        f"{what} yielded inputs of shape {tuple(bx.shape[1:])} after "
                        f"{tuple(x_list[0].shape[1:])}; all inputs must have one shape"
                    )
                x_list.append(bx.detach().to(torch.float32, copy=True))
            y_list.append(by.to(torch.int64))
            count += n
    except DataError:
        raise
    except Exception as exc:  # errors raised by the user's dataset, transforms or collation
        raise DataError(f"reading {what} failed ({_one_line(exc, 300)}); {fix}") from None
    if count == 0:
        raise DataError(f"{what} is empty; expected at least one (x, y) item")
    if expected is not None:
        assert x_out is not None
        if count != expected:
            raise DataError(f"{what} yielded {count} items but its len() is {expected}")
        x = x_out
    else:
        x = torch.cat(x_list)
    y = torch.cat(y_list)
    if int(y.min()) < 0:
        raise DataError(f"{what} has negative label {int(y.min())}; expected class labels 0..C-1")
    return x, y


def _num_classes(ds: Any, y: torch.Tensor, what: str) -> int:
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


def _load_custom(spec: str, split: str, data_split: int, split_idx: int) -> EvalData:
    module, folder = _import_custom(spec)
    func_name = spec.rpartition(":")[2]
    func = getattr(module, func_name, None)
    if func is None or not callable(func):
        raise DataError(
            f"custom dataset {spec!r}: {spec.rpartition(':')[0]} has no function {func_name!r}; "
            f"define {func_name}() there, returning (train, test) torch Datasets"
        )
    try:
        with _prepended_path(folder):
            result = func()
    except Exception as exc:
        raise DataError(f"custom dataset function {spec!r} raised {_one_line(exc, 300)}") from None
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise DataError(
            f"custom dataset function {spec!r} returned {type(result).__name__}, expected a pair "
            f"(train, test) of torch Datasets (test may be None)"
        )
    train, test = result
    ds = train if split == "train" else test
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
        raise DataError(f"{what} cannot be batched by a DataLoader ({_one_line(exc)})") from None
    with _prepended_path(folder):
        x, y = _collect_batches(loader, what, expected)
    if total is None:
        total = len(y)
        idx = split_indices(total, data_split, split_idx)
        if data_split > 1:
            x, y = x[torch.from_numpy(idx)], y[torch.from_numpy(idx)]
    return EvalData(
        x=x,
        y=y,
        num_classes=_num_classes(ds, y, what),
        description=(
            f"custom dataset {spec} {split} split, {_part_text(data_split, split_idx, len(y), total)}, "
            f"as returned by the dataset (no normalization added)"
        ),
    )


def load_pickled_loader(path: str) -> EvalData:
    """Load a pickled ``DataLoader`` (the reference's ``--trainloader``/``--testloader``) once.

    The file is read with ``torch.load(path, weights_only=False)``, which EXECUTES CODE stored
    in the pickle: only load files you made yourself or otherwise trust. The loader is iterated
    once and its batches are concatenated as they come (its own transforms and order apply).

    Args:
        path: File written by ``torch.save(loader, path)``.

    Returns:
        The data; ``num_classes`` is the largest label + 1.

    Raises:
        DataError: If the file is missing or cannot be unpickled, or the loader does not yield
            ``(x, y)`` batches of float inputs and integer labels.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(
            f"pickled data loader not found: {file.absolute()}; expected a file written by "
            f"torch.save(loader, path)"
        )
    try:
        loader = torch.load(file, weights_only=False)
    except Exception as exc:
        raise DataError(
            f"cannot unpickle data loader {file.absolute()} ({_one_line(exc)}); expected a file "
            f"written by torch.save(loader, path) with the classes it uses importable"
        ) from None
    what = f"pickled loader {file.absolute()}"
    if not hasattr(loader, "__iter__"):
        raise DataError(f"{what} holds a {type(loader).__name__}, expected an iterable DataLoader")
    x, y = _collect_batches(loader, what, None)
    return EvalData(
        x=x,
        y=y,
        num_classes=int(y.max()) + 1,
        description=f"{what} ({len(y)} images, transforms as pickled)",
    )


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------


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
    datapath: str = "cifar10/data",
    raw_data: bool = False,
    data_split: int = 1,
    split_idx: int = 0,
    download: bool = True,
) -> EvalData:
    """Load one split of a dataset into memory as tensors, converted and normalized once.

    Args:
        dataset: ``"cifar10"``, ``"digits"`` (names are case-insensitive), or a custom dataset
            ``"path/to/file.py:function"`` / ``"pkg.module:function"`` where ``function()``
            returns ``(train, test)`` torch Datasets of ``(x, y)`` pairs (``test`` may be None).
            A file's folder is on ``sys.path`` while it is imported, called and read.
        split: ``"train"`` or ``"test"``.
        datapath: CIFAR-10 only: the folder holding ``cifar-10-batches-py/`` (or
            ``cifar-10-python.tar.gz``, which is then extracted), or that folder itself.
        raw_data: Skip normalization (inputs stay in [0, 1]). CIFAR-10 uses
            :data:`CIFAR10_MEAN`/:data:`CIFAR10_STD`; digits uses the per-channel mean and std
            of its train split for both splits. No effect on custom datasets, which own their
            transforms and are never normalized here.
        data_split: Cut the split into this many disjoint random parts (see
            :func:`split_indices`); 1 keeps all data in file order.
        split_idx: Which part to load, ``0 <= split_idx < data_split``.
        download: CIFAR-10 only: when the files are missing, try one torchvision download into
            ``datapath`` before giving up.

    Returns:
        :class:`EvalData` with float32 inputs and int64 labels.

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
    if _is_custom_spec(dataset):
        return _load_custom(dataset, split, data_split, split_idx)
    name = dataset.strip().lower()
    if name == "cifar10":
        return _load_cifar10(split, datapath, raw_data, data_split, split_idx, download)
    if name == "digits":
        return _load_digits(split, raw_data, data_split, split_idx)
    raise DataError(_unknown_dataset_message(dataset))


# --------------------------------------------------------------------------------------------
# training data: raw images, augmented first and normalized afterwards
# --------------------------------------------------------------------------------------------


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


def load_training_data(
    dataset: str,
    *,
    datapath: str = "cifar10/data",
    raw_data: bool = False,
    download: bool = True,
) -> TrainingData:
    """Load the training split unnormalized, plus the constants to normalize it after augmentation.

    Args:
        dataset: As :func:`load_eval_data`: ``"cifar10"``, ``"digits"`` or a custom spec.
        datapath: CIFAR-10 folder, as :func:`load_eval_data`.
        raw_data: Never normalize (``mean``/``std`` None), like ``load_eval_data(raw_data=True)``.
        download: CIFAR-10 only: try one torchvision download when the files are missing.

    Returns:
        :class:`TrainingData`. Its constants are CIFAR-10's fixed ones for cifar10, the
        statistics of the digits train split for digits (what :func:`load_eval_data` uses for
        both digits splits), and None for custom datasets, which are never normalized here.

    Raises:
        DataError: As :func:`load_eval_data`.
    """
    data = load_eval_data(dataset, split="train", datapath=datapath, raw_data=True, download=download)
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
