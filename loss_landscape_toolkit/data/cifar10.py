"""CIFAR-10: reading the python-version batch files safely, and where they are looked for.

The batch files are unpickled with a restricted unpickler (no md5 check, so small hand-made files
in the real format work too). A ``cifar-10-python.tar.gz`` next to them is extracted safely; when
the files are missing, one download through torchvision is tried and, if it fails, the error says
where to put which file. Without an explicit ``datapath``, :func:`resolve_datapath` decides where
to look: ``$LANDSCAPE_DATAPATH``, else ``cifar10/data`` (or ``data``) in the working folder.
"""
from __future__ import annotations

import codecs
import contextlib
import importlib
import os
import pickle
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from .. import _files
from .._options import DATAPATH_ENV, DEFAULT_DATAPATH
from ..errors import DataError, one_line
from ._common import EvalData, normalize_
from .splits import _part_text, split_indices

# Per-channel statistics the reference code normalizes CIFAR-10 with (on the [0, 1] scale).
CIFAR10_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR10_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)

_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_FILES = ("test_batch",)
_CIFAR_IMAGE_BYTES = 3 * 32 * 32
_EXTRACT_FOLDER = re.compile(r"^\.cifar10-extract-(\d+)-")  # a private extraction folder, by pid
_CIFAR_NUM_CLASSES = 10

_CONVERT_CHUNK = 2048  # images per step when converting uint8 to normalized float32
# the reference's training script, run inside its cifar10/ folder, keeps the data in ./data
_LOCAL_DATAPATH = "data"


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
        _files.remove_stale(str(root), _EXTRACT_FOLDER)  # left by an extraction that was killed
        tmp = Path(tempfile.mkdtemp(prefix=f".cifar10-extract-{os.getpid()}-", dir=root))
    except OSError as exc:
        raise DataError(
            f"cannot extract {archive} into {root.absolute()} ({one_line(exc, 200)}); make that folder "
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
                f"cannot extract {archive} ({one_line(exc, 200)}); the archive is truncated "
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
                f"({one_line(exc, 200)}); extract the archive there yourself"
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

def _download_cifar10(root: Path, train: bool) -> str | None:
    """Try torchvision's CIFAR-10 download into ``root``; return None or a one-line failure reason."""
    try:
        import torchvision.datasets
    except Exception as exc:  # torchvision missing or broken
        return f"automatic download failed: torchvision unavailable ({one_line(exc, 200)})"
    try:
        with contextlib.redirect_stdout(sys.stderr):  # torchvision prints progress to stdout
            torchvision.datasets.CIFAR10(root=str(root), train=train, download=True)
    except Exception as exc:  # no network, proxy, disk full, checksum mismatch...
        return f"automatic download failed: {one_line(exc, 200)}"
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
    split: str, datapath: str | None, raw_data: bool, data_split: int, split_idx: int, download: bool
) -> EvalData:
    root = Path(resolve_datapath(datapath)).expanduser()
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


def _holds_cifar(root: Path) -> bool:
    return (root / _CIFAR_FOLDER).is_dir() or (root / _CIFAR_ARCHIVE).is_file()


def resolve_datapath(datapath: str | None) -> str:
    """The folder to look for CIFAR-10 in when the caller may not have named one.

    Args:
        datapath: An explicit folder, returned as given; None or ``""`` for the default.

    Returns:
        ``datapath`` if given; else ``$LANDSCAPE_DATAPATH`` if set and non-empty; else
        ``cifar10/data`` relative to the working folder, or ``data`` when that folder holds no
        CIFAR-10 but ``./data`` does (a ``cifar-10-batches-py`` folder or the ``.tar.gz``).
    """
    if datapath:
        return datapath
    from_env = os.environ.get(DATAPATH_ENV)
    if from_env:
        return from_env
    if not _holds_cifar(Path(DEFAULT_DATAPATH)) and _holds_cifar(Path(_LOCAL_DATAPATH)):
        return _LOCAL_DATAPATH
    return DEFAULT_DATAPATH
