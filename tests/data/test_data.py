"""Tests for the data package: CIFAR-10 files in the real format, data paths, splits, digits, custom datasets."""
from __future__ import annotations

import importlib
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_files import (
    FOLDER,
    TEST_FILE,
    TRAIN_FILES,
    make_batch,
    make_tar,
    peak_increase_mib,
    py2_style_batch,
    write_batch,
    write_cifar,
)

from loss_landscape_toolkit.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DATAPATH_ENV,
    DEFAULT_DATAPATH,
    EvalData,
    list_datasets,
    load_eval_data,
    load_pickled_loader,
    load_training_data,
    read_cifar10_arrays,
    resolve_datapath,
    split_indices,
)
from loss_landscape_toolkit.data.cifar10 import _uint8_hwc_to_float
from loss_landscape_toolkit.errors import DataError, UsageError

# One pixel with distinct R, G, B values, placed in image 3 of data_batch_2 (image 11 overall).
PIXEL_IMAGE, PIXEL_ROW, PIXEL_COL = 3, 5, 17
PIXEL_RGB = (10, 200, 77)


@pytest.fixture
def cifar(tmp_path: Path) -> tuple[Path, dict]:
    """datapath with cifar-10-batches-py/ holding 5 x 8 train images and 6 test images."""
    folder = tmp_path / "data" / FOLDER
    contents = write_cifar(folder)
    data, labels = contents["data_batch_2"]
    for channel, value in enumerate(PIXEL_RGB):
        data[PIXEL_IMAGE, channel * 1024 + PIXEL_ROW * 32 + PIXEL_COL] = value
    write_batch(folder / "data_batch_2", data, labels)
    return tmp_path / "data", contents


def _expected_train(contents: dict) -> tuple[np.ndarray, np.ndarray]:
    data = np.concatenate([contents[name][0] for name in TRAIN_FILES])
    labels = np.concatenate([contents[name][1] for name in TRAIN_FILES])
    return data, labels


def _normalized(data: np.ndarray) -> np.ndarray:
    x = data.reshape(-1, 3, 32, 32).astype(np.float64) / 255
    mean = np.array(CIFAR10_MEAN).reshape(1, 3, 1, 1)
    std = np.array(CIFAR10_STD).reshape(1, 3, 1, 1)
    return (x - mean) / std


def test_list_datasets() -> None:
    assert list_datasets() == ["cifar10", "digits"]


def test_data_error_is_usage_error() -> None:
    assert issubclass(DataError, UsageError)


# ---------------------------------------------------------------------------------- cifar10


def test_cifar_train_shapes_labels_and_normalization(cifar) -> None:
    datapath, contents = cifar
    data = load_eval_data("cifar10", datapath=str(datapath), download=False)
    assert isinstance(data, EvalData)
    assert data.x.shape == (40, 3, 32, 32) and data.x.dtype == torch.float32
    assert data.x.is_contiguous()
    assert data.y.shape == (40,) and data.y.dtype == torch.int64
    assert data.num_classes == 10 and len(data) == 40
    raw, labels = _expected_train(contents)
    assert data.y.tolist() == labels.tolist()  # file order, data_batch_1 first
    np.testing.assert_allclose(data.x.numpy(), _normalized(raw), rtol=0, atol=1e-5)
    assert "cifar10 train" in data.description and "40 images" in data.description
    assert "\n" not in data.description


def test_cifar_pixel_lands_in_right_channel_row_and_col(cifar) -> None:
    datapath, _ = cifar
    data = load_eval_data("cifar10", datapath=str(datapath), download=False)
    raw = load_eval_data("cifar10", datapath=str(datapath), download=False, raw_data=True)
    image = 8 + PIXEL_IMAGE  # data_batch_2 follows the 8 images of data_batch_1
    for channel, value in enumerate(PIXEL_RGB):
        got = data.x[image, channel, PIXEL_ROW, PIXEL_COL].item()
        want = (value / 255 - CIFAR10_MEAN[channel]) / CIFAR10_STD[channel]
        assert got == pytest.approx(want, abs=1e-6)
        assert raw.x[image, channel, PIXEL_ROW, PIXEL_COL].item() == pytest.approx(value / 255, abs=1e-7)
    # Transposed row/col would hold a different (random) value.
    assert raw.x[image, 0, PIXEL_COL, PIXEL_ROW].item() != pytest.approx(PIXEL_RGB[0] / 255)


def test_cifar_raw_data_is_exactly_uint8_over_255(cifar) -> None:
    datapath, contents = cifar
    data = load_eval_data("cifar10", split="test", datapath=str(datapath), raw_data=True, download=False)
    raw, labels = contents[TEST_FILE]
    want = torch.from_numpy(raw.reshape(-1, 3, 32, 32)).float().div(255)
    assert data.x.shape == (6, 3, 32, 32)
    assert torch.equal(data.x, want)
    assert data.y.tolist() == list(labels)
    assert "raw" in data.description


def test_cifar_normalization_matches_totensor_normalize_bitwise(cifar) -> None:
    datapath, contents = cifar
    data = load_eval_data("cifar10", split="test", datapath=str(datapath), download=False)
    raw = torch.from_numpy(contents[TEST_FILE][0].reshape(-1, 3, 32, 32)).float().div(255)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    assert torch.equal(data.x, raw.sub(mean).div(std))


def test_cifar_datapath_may_point_at_batches_folder(cifar) -> None:
    datapath, _ = cifar
    outer = load_eval_data("cifar10", datapath=str(datapath), download=False)
    inner = load_eval_data("cifar10", datapath=str(datapath / FOLDER), download=False)
    assert torch.equal(outer.x, inner.x) and torch.equal(outer.y, inner.y)


def test_read_cifar10_arrays_returns_hwc_uint8(cifar) -> None:
    datapath, contents = cifar
    images, labels = read_cifar10_arrays(str(datapath), train=True)
    assert images.shape == (40, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (40,) and labels.dtype == np.int64
    assert tuple(images[8 + PIXEL_IMAGE, PIXEL_ROW, PIXEL_COL]) == PIXEL_RGB
    test_images, test_labels = read_cifar10_arrays(str(datapath / FOLDER), train=False)
    assert test_images.shape == (6, 32, 32, 3)
    assert test_labels.tolist() == list(contents[TEST_FILE][1])


def test_cifar_python2_pickles_load(tmp_path: Path) -> None:
    """The original files were written by Python 2's cPickle: str keys, BINSTRING array data."""
    folder = tmp_path / FOLDER
    folder.mkdir()
    contents = {}
    for i, name in enumerate(TRAIN_FILES):
        contents[name] = make_batch(3 + i, seed=i)
        (folder / name).write_bytes(py2_style_batch(*contents[name]))
    data = load_eval_data("cifar10", datapath=str(tmp_path), raw_data=True, download=False)
    raw, labels = _expected_train(contents)
    assert data.x.shape == (25, 3, 32, 32)
    assert torch.equal(data.x, torch.from_numpy(raw.reshape(-1, 3, 32, 32)).float().div(255))
    assert data.y.tolist() == labels.tolist()


def test_cifar_tar_gz_is_extracted_and_loaded(cifar, tmp_path: Path) -> None:
    datapath, contents = cifar
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    make_tar(fresh / "cifar-10-python.tar.gz", datapath / FOLDER)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = fresh / f".cifar10-extract-{int(ended.stdout)}-x1y2"  # left by an extraction that was killed
    (killed / FOLDER).mkdir(parents=True)
    data = load_eval_data("cifar10", split="test", datapath=str(fresh), raw_data=True, download=False)
    assert data.y.tolist() == list(contents[TEST_FILE][1])
    assert (fresh / FOLDER / "data_batch_5").is_file()
    assert sorted(p.name for p in fresh.iterdir()) == [FOLDER, "cifar-10-python.tar.gz"]  # no temp left
    train = load_eval_data("cifar10", datapath=str(fresh), download=False)
    assert train.x.shape == (40, 3, 32, 32)


def test_cifar_tar_member_escaping_folder_is_refused(cifar, tmp_path: Path) -> None:
    datapath, _ = cifar
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with tarfile.open(fresh / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(datapath / FOLDER / "test_batch", arcname="../escaped")
    with pytest.raises(DataError, match="outside the folder"):
        load_eval_data("cifar10", split="test", datapath=str(fresh), download=False)
    assert not (tmp_path / "escaped").exists()


def test_cifar_tar_symlink_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to("/etc/passwd")
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(link, arcname=f"{FOLDER}/test_batch")
    with pytest.raises(DataError, match="link or special file"):
        load_eval_data("cifar10", split="test", datapath=str(tmp_path), download=False)


def test_cifar_corrupt_tar_gives_data_error(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        load_eval_data("cifar10", datapath=str(tmp_path), download=False)


def test_cifar_missing_files_message_without_download(tmp_path: Path) -> None:
    datapath = tmp_path / "nowhere"
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        load_eval_data("cifar10", datapath=str(datapath), download=False)
    assert time.perf_counter() - start < 2
    message = str(info.value)
    assert "\n" not in message
    assert f"{datapath.absolute()}/{FOLDER}/data_batch_1..5 and test_batch" in message
    assert ".tar.gz placed in" in message and "https://www.cs.toronto.edu/~kriz/cifar.html" in message
    assert "download=False" in message


def test_cifar_missing_file_is_listed(cifar) -> None:
    datapath, _ = cifar
    (datapath / FOLDER / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing: data_batch_3;"):
        load_eval_data("cifar10", datapath=str(datapath), download=False)
    # The test split is still complete.
    assert load_eval_data("cifar10", split="test", datapath=str(datapath), download=False).x.shape[0] == 6
    with pytest.raises(DataError, match="never downloads"):
        read_cifar10_arrays(str(datapath), train=True)


@pytest.fixture
def no_network(monkeypatch):
    """Make every name lookup and connection fail at once, whether or not a network exists."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled by test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_cifar_failed_download_reports_where_to_put_files(tmp_path: Path, no_network) -> None:
    importlib.import_module("torchvision.datasets")  # its import cost is kept out of the timing below

    datapath = tmp_path / "data"
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        load_eval_data("cifar10", datapath=str(datapath), download=True)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("CIFAR-10 not found: expected ")
    assert f"{datapath.absolute()}/{FOLDER}/data_batch_1..5 and test_batch" in message
    assert "automatic download failed:" in message and "network disabled by test" in message


def test_cifar_successful_download_is_used(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets

    calls = []

    class FakeCIFAR10:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            write_cifar(Path(root) / FOLDER, train_sizes=(2,) * 5, test_size=3)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    datapath = tmp_path / "data"
    data = load_eval_data("cifar10", split="test", datapath=str(datapath))
    assert calls == [(str(datapath), False, True)]
    assert data.x.shape == (3, 3, 32, 32)
    load_eval_data("cifar10", split="test", datapath=str(datapath))
    assert len(calls) == 1  # files present now: no second download


def test_cifar_truncated_batch_names_the_file(cifar) -> None:
    datapath, _ = cifar
    path = datapath / FOLDER / "data_batch_3"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="data_batch_3.*truncated or corrupt"):
        load_eval_data("cifar10", datapath=str(datapath), download=False)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_pickle_calling_os_system_is_refused(cifar) -> None:
    datapath, _ = cifar
    marker = datapath / "pwned"
    payload = pickle.dumps({b"data": _Evil(marker), b"labels": []}, protocol=2)
    assert b"system" in payload
    (datapath / FOLDER / TEST_FILE).write_bytes(payload)
    with pytest.raises(DataError, match=r"refusing to load .*test_batch.*system"):
        load_eval_data("cifar10", split="test", datapath=str(datapath), download=False)
    assert not marker.exists()


@pytest.mark.parametrize(
    "batch, match",
    [
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"shape \(N, 3072\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "expected uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"expected 0\.\.9"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 1]}, "CIFAR-100"),
        ({b"pixels": 1}, "lacks b'data'"),
        ([1, 2, 3], "holds a list"),
    ],
)
def test_cifar_malformed_batch_contents(cifar, batch, match) -> None:
    datapath, _ = cifar
    with open(datapath / FOLDER / TEST_FILE, "wb") as fh:
        pickle.dump(batch, fh, protocol=2)
    with pytest.raises(DataError, match=match) as info:
        load_eval_data("cifar10", split="test", datapath=str(datapath), download=False)
    assert "test_batch" in str(info.value)


def test_cifar_data_split_parts_are_disjoint(cifar) -> None:
    datapath, contents = cifar
    full = load_eval_data("cifar10", datapath=str(datapath), raw_data=True, download=False)
    seen = []
    for idx in range(3):
        part = load_eval_data(
            "cifar10", datapath=str(datapath), raw_data=True, data_split=3, split_idx=idx, download=False
        )
        want = split_indices(40, 3, idx)
        assert part.x.shape == (13, 3, 32, 32)
        assert torch.equal(part.x, full.x[torch.from_numpy(want)])
        assert torch.equal(part.y, full.y[torch.from_numpy(want)])
        assert f"split_idx={idx} of data_split=3: 13 of 40 images" in part.description
        seen.extend(want.tolist())
    assert len(seen) == len(set(seen)) == 39


def test_bad_split_arguments_fail_before_reading(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_eval_data("cifar10", split="val", datapath=str(tmp_path))
    with pytest.raises(DataError, match="split_idx"):
        load_eval_data("cifar10", datapath=str(tmp_path), data_split=2, split_idx=2)
    with pytest.raises(DataError, match="data_split must be >= 1"):
        load_eval_data("digits", data_split=0)
    with pytest.raises(DataError, match="cannot cut 6 items"):
        write_cifar(tmp_path / FOLDER)
        load_eval_data("cifar10", split="test", datapath=str(tmp_path), data_split=7, download=False)


# ---------------------------------------------------------------------------------- datapath


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    """An empty working folder, with LANDSCAPE_DATAPATH unset."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DATAPATH_ENV, raising=False)
    return tmp_path


def test_resolve_datapath_explicit_path_wins(workdir: Path, monkeypatch) -> None:
    monkeypatch.setenv(DATAPATH_ENV, str(workdir / "from_env"))
    write_cifar(workdir / "data" / FOLDER)
    assert resolve_datapath("some/where") == "some/where"
    assert resolve_datapath(str(workdir)) == str(workdir)


def test_resolve_datapath_environment_variable(workdir: Path, monkeypatch) -> None:
    monkeypatch.setenv(DATAPATH_ENV, "/from/env")
    write_cifar(workdir / "cifar10" / "data" / FOLDER)
    assert resolve_datapath(None) == "/from/env"
    assert resolve_datapath("") == "/from/env"
    monkeypatch.setenv(DATAPATH_ENV, "")  # set but empty counts as unset
    assert resolve_datapath(None) == DEFAULT_DATAPATH


def test_resolve_datapath_default_is_relative_to_working_folder(workdir: Path) -> None:
    assert DATAPATH_ENV == "LANDSCAPE_DATAPATH" and os.path.join("cifar10", "data") == DEFAULT_DATAPATH
    assert resolve_datapath(None) == DEFAULT_DATAPATH
    (workdir / "data").mkdir()
    (workdir / "data" / "other.bin").write_bytes(b"")  # a ./data without CIFAR-10 is not taken
    assert resolve_datapath(None) == DEFAULT_DATAPATH
    with pytest.raises(DataError) as info:
        load_eval_data("cifar10", download=False)
    assert f"{Path.cwd() / 'cifar10' / 'data' / FOLDER}/data_batch_1..5" in str(info.value)


@pytest.mark.parametrize("layout", ["folder", "archive"])
def test_resolve_datapath_falls_back_to_data_holding_cifar(workdir: Path, layout: str) -> None:
    if layout == "folder":
        write_cifar(workdir / "data" / FOLDER)
    else:
        (workdir / "data").mkdir()
        (workdir / "data" / "cifar-10-python.tar.gz").write_bytes(b"")
    assert resolve_datapath(None) == "data"
    write_cifar(workdir / "cifar10" / "data" / FOLDER)  # once cifar10/data holds CIFAR-10, it wins
    assert resolve_datapath(None) == DEFAULT_DATAPATH


def test_loaders_without_datapath_read_the_resolved_folder(workdir: Path, monkeypatch) -> None:
    contents = write_cifar(workdir / "data" / FOLDER)
    data = load_eval_data("cifar10", split="test", raw_data=True, download=False)
    assert data.y.tolist() == list(contents[TEST_FILE][1])
    assert f"from {Path.cwd() / 'data' / FOLDER}" in data.description
    assert load_training_data("cifar10", download=False).x.shape == (40, 3, 32, 32)
    elsewhere = workdir / "elsewhere"
    write_cifar(elsewhere, test_size=3)
    monkeypatch.setenv(DATAPATH_ENV, str(elsewhere))
    assert load_eval_data("cifar10", split="test", download=False).x.shape[0] == 3


# ----------------------------------------------------------------------------- split_indices


def test_split_indices_parts_are_disjoint_equal_and_cover_a_subset() -> None:
    n, k = 103, 4
    parts = [split_indices(n, k, i) for i in range(k)]
    for part in parts:
        assert part.dtype == np.int64 and len(part) == n // k
        assert np.all(np.diff(part) > 0)  # sorted, no repeats
        assert part.min() >= 0 and part.max() < n
    union = np.concatenate(parts)
    assert len(np.unique(union)) == k * (n // k)
    assert not np.array_equal(parts[0], parts[1])


def test_split_indices_one_part_is_everything_in_order() -> None:
    assert split_indices(7, 1, 0).tolist() == list(range(7))


def test_split_indices_do_not_depend_on_global_random_state() -> None:
    np.random.seed(123)
    torch.manual_seed(123)
    first = split_indices(10, 3, 1)
    np.random.seed(999)
    np.random.random(50)
    torch.manual_seed(7)
    assert np.array_equal(first, split_indices(10, 3, 1))
    # Fixed values: numpy's seeded Generator is stable across processes and versions.
    assert [split_indices(10, 3, i).tolist() for i in range(3)] == [[2, 4, 6], [3, 5, 7], [0, 8, 9]]
    assert not np.array_equal(split_indices(10, 3, 1, seed=1), first)


@pytest.mark.parametrize(
    "args, match",
    [
        ((10, 0, 0), "data_split must be >= 1"),
        ((10, -2, 0), "data_split must be >= 1"),
        ((10, 3, 3), "0 <= split_idx < data_split"),
        ((10, 3, -1), "0 <= split_idx < data_split"),
        ((2, 3, 0), "cannot cut 2 items into data_split=3"),
        ((0, 1, 0), "empty"),
        ((10, 2.0, 0), "data_split must be an integer"),
        ((10, True, 0), "data_split must be an integer"),
        ((10, 2, "1"), "split_idx must be an integer"),
    ],
)
def test_split_indices_bad_arguments(args, match) -> None:
    with pytest.raises(DataError, match=match):
        split_indices(*args)


# ---------------------------------------------------------------------------------- digits


def test_digits_shapes_classes_and_determinism() -> None:
    train = load_eval_data("digits")
    test = load_eval_data("digits", split="test")
    assert train.x.shape == (1437, 3, 32, 32) and test.x.shape == (360, 3, 32, 32)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert train.num_classes == test.num_classes == 10
    assert set(train.y.tolist()) == set(range(10))
    again = load_eval_data("digits")
    assert torch.equal(train.x, again.x) and torch.equal(train.y, again.y)
    assert torch.equal(train.x[:, 0], train.x[:, 1]) and torch.equal(train.x[:, 0], train.x[:, 2])


def test_digits_split_follows_seeded_permutation_and_upsampling() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    perm = np.random.default_rng(0).permutation(1797)
    test_idx, train_idx = np.sort(perm[:360]), np.sort(perm[360:])
    raw_train = load_eval_data("digits", raw_data=True)
    raw_test = load_eval_data("digits", split="test", raw_data=True)
    assert raw_train.y.tolist() == digits.target[train_idx].tolist()
    assert raw_test.y.tolist() == digits.target[test_idx].tolist()
    image = torch.from_numpy(digits.images[test_idx[5]] / 16).float().view(1, 1, 8, 8)
    up = torch.nn.functional.interpolate(image, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(raw_test.x[5, 1], up[0, 0], atol=1e-6)
    assert raw_train.x.min() >= 0 and raw_train.x.max() <= 1


def test_digits_normalization_uses_train_constants() -> None:
    train = load_eval_data("digits")
    test = load_eval_data("digits", split="test")
    mean = train.x.double().mean(dim=(0, 2, 3))
    std = train.x.double().std(dim=(0, 2, 3), correction=0)
    assert torch.allclose(mean, torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(std, torch.ones(3, dtype=torch.float64), atol=1e-5)
    raw_train = load_eval_data("digits", raw_data=True).x.double()
    raw_test = load_eval_data("digits", split="test", raw_data=True).x.double()
    c_mean = raw_train.mean(dim=(0, 2, 3)).view(1, 3, 1, 1)
    c_std = raw_train.std(dim=(0, 2, 3), correction=0).view(1, 3, 1, 1)
    assert torch.allclose(test.x.double(), (raw_test - c_mean) / c_std, atol=1e-5)
    assert abs(test.x.double().mean().item()) > 1e-4  # not renormalized with its own statistics


def test_digits_data_split() -> None:
    full = load_eval_data("digits", split="test")
    part = load_eval_data("digits", split="test", data_split=4, split_idx=3)
    idx = torch.from_numpy(split_indices(360, 4, 3))
    assert torch.equal(part.x, full.x[idx]) and torch.equal(part.y, full.y[idx])


# ------------------------------------------------------------------------------- custom


CUSTOM_SOURCE = """
import torch
from torch.utils.data import Dataset, TensorDataset


class Labeled(Dataset):
    classes = [f"c{i}" for i in range(12)]

    def __init__(self, n, offset):
        self.n, self.offset = n, offset

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.full((2, 4, 4), float(i + self.offset), dtype=torch.float64), (i * 7) % 5


def both():
    return Labeled(300, 0), Labeled(10, 1000)


def train_only():
    return TensorDataset(torch.arange(12.0).view(6, 2), torch.tensor([0, 3, 1, 1, 2, 0])), None


def boom():
    raise RuntimeError("dataset server unreachable")


def not_a_pair():
    return Labeled(3, 0)


def not_a_dataset():
    return 42, None


def string_inputs():
    return [("a", 0), ("b", 1)], None


def float_labels():
    return TensorDataset(torch.zeros(4, 3), torch.tensor([0.0, 1.0, 0.5, 2.0])), None


def int_inputs():
    return TensorDataset(torch.zeros(4, 3, dtype=torch.uint8), torch.tensor([0, 1, 0, 1])), None


def bool_labels():
    return TensorDataset(torch.zeros(4, 3), torch.tensor([True, False, True, False])), None


def dict_without_target():
    return [{"input_ids": torch.zeros(3, dtype=torch.long), "target": torch.tensor(1)}] * 2, None


def empty():
    return TensorDataset(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)), None


def uses_sibling():
    import custom_sibling_helper

    return custom_sibling_helper.make(), None

NOT_CALLABLE = 3
"""


@pytest.fixture
def custom_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_data.py"
    path.write_text(textwrap.dedent(CUSTOM_SOURCE))
    (tmp_path / "custom_sibling_helper.py").write_text(
        "import torch\nfrom torch.utils.data import TensorDataset\n\n"
        "def make():\n    return TensorDataset(torch.ones(3, 2), torch.tensor([2, 0, 1]))\n"
    )
    return path


def test_custom_from_file(custom_file: Path) -> None:
    data = load_eval_data(f"{custom_file}:both")
    assert data.x.shape == (300, 2, 4, 4) and data.x.dtype == torch.float32
    assert data.y.dtype == torch.int64
    assert data.x[:, 0, 0, 0].tolist() == [float(i) for i in range(300)]  # order kept, no normalization
    assert data.y.tolist() == [(i * 7) % 5 for i in range(300)]
    assert data.num_classes == 12  # from .classes, not max(y) + 1
    raw = load_eval_data(f"{custom_file}:both", raw_data=True)
    assert torch.equal(raw.x, data.x)  # raw_data has no effect on custom datasets
    test = load_eval_data(f"{custom_file}:both", split="test")
    assert test.x[:, 0, 0, 0].tolist() == [1000.0 + i for i in range(10)]
    assert "custom dataset" in data.description and "300 items" in data.description


def test_custom_data_split(custom_file: Path) -> None:
    full = load_eval_data(f"{custom_file}:both")
    part = load_eval_data(f"{custom_file}:both", data_split=7, split_idx=2)
    idx = torch.from_numpy(split_indices(300, 7, 2))
    assert torch.equal(part.x, full.x[idx]) and torch.equal(part.y, full.y[idx])


def test_custom_test_none(custom_file: Path) -> None:
    data = load_eval_data(f"{custom_file}:train_only")
    assert data.x.shape == (6, 2) and data.num_classes == 4  # max(y) + 1
    with pytest.raises(DataError, match="no test split"):
        load_eval_data(f"{custom_file}:train_only", split="test")


def test_custom_file_may_import_its_siblings(custom_file: Path) -> None:
    data = load_eval_data(f"{custom_file}:uses_sibling")
    assert data.y.tolist() == [2, 0, 1]
    assert str(custom_file.parent) not in sys.path
    sys.modules.pop("custom_sibling_helper", None)


def test_custom_from_module(custom_file: Path, monkeypatch) -> None:
    name = "lossland_test_custom_module"
    (custom_file.parent / f"{name}.py").write_text(custom_file.read_text())
    monkeypatch.syspath_prepend(str(custom_file.parent))
    monkeypatch.delitem(sys.modules, name, raising=False)
    try:
        data = load_eval_data(f"{name}:train_only")
        assert data.y.tolist() == [0, 3, 1, 1, 2, 0]
    finally:
        sys.modules.pop(name, None)


@pytest.mark.parametrize(
    "function, match",
    [
        ("missing_function", r"my_data\.py has no 'missing_function'"),
        ("NOT_CALLABLE", r"'NOT_CALLABLE' in .*my_data\.py is a int, not callable"),
        ("boom", "raised RuntimeError: dataset server unreachable"),
        ("not_a_pair", r"expected a pair \(train, test\)"),
        ("not_a_dataset", "returned a int as its train split"),
        ("string_inputs", "yielded input 'x' of type tuple, expected a tensor per item"),
        ("bool_labels", r"targets of dtype torch.bool and shape \(4,\), expected integer class labels or real"),
        ("dict_without_target", r"keys \['input_ids', 'target'\] but no target 'labels'; name the target's "
                                r"key with --target_key"),
        ("empty", "is empty"),
    ],
)
def test_custom_failures(custom_file: Path, function: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_eval_data(f"{custom_file}:{function}")


def test_custom_inputs_of_any_dtype_and_real_targets_are_kept_as_given(custom_file: Path) -> None:
    tokens = load_eval_data(f"{custom_file}:int_inputs")
    assert tokens.x.dtype == torch.uint8 and torch.equal(tokens.y, torch.tensor([0, 1, 0, 1]))
    regression = load_eval_data(f"{custom_file}:float_labels")
    assert regression.y.dtype == torch.float32 and regression.num_classes == 0
    assert torch.equal(regression.y, torch.tensor([0.0, 1.0, 0.5, 2.0]))


def test_custom_dict_items_split_into_keyword_inputs_and_the_target(tmp_path: Path) -> None:
    source = tmp_path / "dicts.py"
    source.write_text(
        "import torch\n"
        "def items():\n"
        "    ids = torch.arange(40).view(10, 4) % 7\n"
        "    labels = torch.where(ids > 4, -100, ids)  # -100: positions to skip\n"
        "    data = [{'input_ids': ids[i], 'mask': ids[i] > 0, 'target': labels[i]} for i in range(10)]\n"
        "    return data, None\n")
    data = load_eval_data(f"{source}:items", target_key="target", data_split=2, split_idx=1)
    assert sorted(data.x) == ["input_ids", "mask"] and data.x["mask"].dtype == torch.bool
    rows = torch.from_numpy(split_indices(10, 2, 1))
    ids = torch.arange(40).view(10, 4) % 7
    assert torch.equal(data.x["input_ids"], ids[rows])
    assert torch.equal(data.y, torch.where(ids > 4, -100, ids)[rows])
    assert data.num_classes == 5  # largest counted label + 1; -100 is not a label
    with pytest.raises(DataError, match="no target 'labels'"):
        load_eval_data(f"{source}:items")


def test_custom_import_failures(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="custom dataset file not found: .*absent.py"):
        load_eval_data(f"{tmp_path}/absent.py:make")
    broken = tmp_path / "broken.py"
    broken.write_text("def make(:\n")
    with pytest.raises(DataError, match="SyntaxError"):
        load_eval_data(f"{broken}:make")
    failing = tmp_path / "failing.py"
    failing.write_text("import no_such_module_for_lossland\n")
    with pytest.raises(DataError, match="no_such_module_for_lossland"):
        load_eval_data(f"{failing}:make")
    with pytest.raises(DataError, match="cannot import module 'no_such_pkg_lossland.sub'"):
        load_eval_data("no_such_pkg_lossland.sub:make")
    with pytest.raises(DataError, match="malformed custom dataset spec 'some.module:'"):
        load_eval_data("some.module:")


# ------------------------------------------------------------------------- names, loaders


def test_unknown_dataset_message_lists_choices() -> None:
    with pytest.raises(DataError) as info:
        load_eval_data("mnist")
    message = str(info.value)
    assert "'mnist'" in message and "cifar10, digits" in message
    assert "path/to/file.py:function" in message and "pkg.module:function" in message
    with pytest.raises(DataError, match="imagenet' is not supported.*never implemented.*cifar10, digits"):
        load_eval_data("imagenet")


def test_dataset_names_are_case_insensitive() -> None:
    assert load_eval_data("Digits", split="test").x.shape == (360, 3, 32, 32)


def test_load_pickled_loader(tmp_path: Path) -> None:
    x = torch.randn(10, 3, 4, 4)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 6])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    path = tmp_path / "testloader.pt"
    torch.save(loader, path)
    data = load_pickled_loader(str(path))
    assert torch.equal(data.x, x) and torch.equal(data.y, y)
    assert data.num_classes == 7
    assert str(path) in data.description
    with pytest.raises(DataError, match="pickled data loader not found"):
        load_pickled_loader(str(tmp_path / "absent.pt"))
    (tmp_path / "garbage.pt").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cannot unpickle"):
        load_pickled_loader(str(tmp_path / "garbage.pt"))


# -------------------------------------------------------------------------------- memory


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_conversion_allocates_one_float_copy() -> None:
    """Converting N images costs one float32 output, not several float copies."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10000, 3, 32, 32), dtype=np.uint8).transpose(0, 2, 3, 1)
    float_mib = images.size * 4 / 2**20  # 117 MiB
    x, over = peak_increase_mib(
        lambda: _uint8_hwc_to_float(images, None, CIFAR10_MEAN, CIFAR10_STD)
    )
    assert x.shape == (10000, 3, 32, 32)
    slack = 16  # MiB of allocator and interpreter noise; a second float copy would be 117
    assert over < 1.05 * float_mib + slack
    del x
    idx = split_indices(10000, 2, 1)
    x, over = peak_increase_mib(
        lambda: _uint8_hwc_to_float(images, idx, CIFAR10_MEAN, CIFAR10_STD)
    )
    first = _uint8_hwc_to_float(images[idx[:3]], None, CIFAR10_MEAN, CIFAR10_STD)
    assert torch.equal(x[:3], first)
    assert over < 1.05 * float_mib / 2 + slack


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_loading_costs_uint8_plus_one_float_copy(tmp_path: Path) -> None:
    folder = tmp_path / FOLDER
    folder.mkdir()
    for i, name in enumerate(TRAIN_FILES):
        write_batch(folder / name, *make_batch(2000, i))
    data, over = peak_increase_mib(
        lambda: load_eval_data("cifar10", datapath=str(tmp_path), download=False)
    )
    float_mib = data.x.numel() * 4 / 2**20  # 117 MiB
    uint8_mib = float_mib / 4
    # Measured: float + uint8 + ~16 MiB of per-file unpickling buffers. A second float copy
    # would add another 117 MiB.
    assert over < float_mib + 2.5 * uint8_mib + 24
