"""Helpers for tests/test_dataloader.py: CIFAR-10 files in the real format, and a memory probe.

Run as a script to measure peak memory of loading a synthetic CIFAR-10 train set::

    .venv/bin/python tests/dataloader_helpers.py write /tmp/c10 50000
    .venv/bin/python tests/dataloader_helpers.py probe /tmp/c10

``probe`` prints one JSON line with resident-set sizes in MiB (Linux only).
"""
from __future__ import annotations

import json
import pickle
import struct
import sys
import tarfile
from pathlib import Path

import numpy as np

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
FOLDER = "cifar-10-batches-py"


def make_batch(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """Random uint8 images (n, 3072) in the CIFAR layout and labels 0..9."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    return data, labels


def write_batch(path: Path, data: np.ndarray, labels: list[int], label: bytes = b"batch") -> None:
    """Write one batch file as CIFAR-10 does: a protocol-2 pickle of a dict with bytes keys."""
    batch = {
        b"batch_label": label,
        b"labels": list(labels),
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    with open(path, "wb") as fh:
        pickle.dump(batch, fh, protocol=2)


def write_cifar(
    folder: Path, train_sizes: tuple[int, ...] = (8,) * 5, test_size: int = 6, seed: int = 0
) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Write data_batch_1..5 and test_batch into ``folder``; return their contents by file name."""
    folder.mkdir(parents=True, exist_ok=True)
    contents = {}
    for i, (name, n) in enumerate(zip(TRAIN_FILES, train_sizes)):
        contents[name] = make_batch(n, seed + i)
        write_batch(folder / name, *contents[name], label=f"training batch {i + 1} of 5".encode())
    contents[TEST_FILE] = make_batch(test_size, seed + 100)
    write_batch(folder / TEST_FILE, *contents[TEST_FILE], label=b"testing batch 1 of 1")
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"class{i}".encode() for i in range(10)]}, fh, protocol=2)
    return contents


def make_tar(archive: Path, folder: Path, arcname: str = FOLDER) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=arcname)


def _py2_string(b: bytes) -> bytes:
    if len(b) < 256:
        return b"U" + bytes([len(b)]) + b  # SHORT_BINSTRING
    return b"T" + struct.pack("<i", len(b)) + b  # BINSTRING


def _py2_int(i: int) -> bytes:
    if i < 256:
        return b"K" + bytes([i])  # BININT1
    if i < 65536:
        return b"M" + struct.pack("<H", i)  # BININT2
    return b"J" + struct.pack("<i", i)  # BININT


def py2_style_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """Bytes of a batch pickled the way Python 2's cPickle wrote the original CIFAR-10 files.

    Python 3 cannot produce this form (str objects become SHORT_BINSTRING/BINSTRING and the
    array is rebuilt through ``numpy.core.multiarray._reconstruct``), so it is assembled by hand.
    """
    n = data.shape[0]
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\n"
        + b"cnumpy\nndarray\n"
        + _py2_int(0) + b"\x85" + _py2_string(b"b") + b"\x87R"
        + b"(" + _py2_int(1) + _py2_int(n) + _py2_int(3072) + b"\x86"
        + b"cnumpy\ndtype\n" + _py2_string(b"u1") + _py2_int(0) + _py2_int(1) + b"\x87R"
        + b"(" + _py2_int(3) + _py2_string(b"|") + b"NNN" + b"J\xff\xff\xff\xff" * 2
        + _py2_int(0) + b"tb"
        + b"\x89" + _py2_string(np.ascontiguousarray(data).tobytes()) + b"tb"
    )
    label_list = b"](" + b"".join(_py2_int(v) for v in labels) + b"e"
    return (
        b"\x80\x02}("
        + _py2_string(b"batch_label") + _py2_string(b"training batch 1 of 5")
        + _py2_string(b"labels") + label_list
        + _py2_string(b"data") + array
        + b"u."
    )


def _status_mib() -> dict[str, float]:
    values = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def peak_increase_mib(fn):
    """Call ``fn()``; return its result and how far the peak RSS rose above the RSS before (MiB)."""
    _reset_peak()
    before = _status_mib()["VmRSS"]
    result = fn()
    return result, _status_mib()["VmHWM"] - before


def probe(root: str) -> dict[str, float]:
    """Peak RSS of load_eval_data('cifar10') and of the uint8 -> float32 conversion alone."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import torch  # noqa: F401  (imported before the baseline is taken)

    from loss_landscape_toolkit import data as dataloader

    base = _status_mib()["VmRSS"]
    data, load_over = peak_increase_mib(
        lambda: dataloader.load_eval_data("cifar10", split="train", datapath=root, download=False)
    )
    peak_load = base + load_over
    float_mib = data.x.numel() * 4 / 2**20
    n = len(data)
    del data

    images, labels = dataloader.read_cifar10_arrays(root, train=True)
    x, convert_over = peak_increase_mib(
        lambda: dataloader._uint8_hwc_to_float(images, None, dataloader.CIFAR10_MEAN, dataloader.CIFAR10_STD)
    )
    del x
    return {
        "images": n,
        "uint8_mib": images.nbytes / 2**20,
        "float32_mib": float_mib,
        "baseline_rss_mib": base,
        "load_peak_rss_mib": peak_load,
        "load_peak_over_baseline_mib": load_over,
        "convert_peak_over_inputs_mib": convert_over,
    }


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "write":
        n = int(argv[2])
        folder = Path(argv[1]) / FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        per = n // 5
        for i, name in enumerate(TRAIN_FILES):
            write_batch(folder / name, *make_batch(per, i))
        return 0
    if len(argv) == 2 and argv[0] == "probe":
        print(json.dumps(probe(argv[1])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
