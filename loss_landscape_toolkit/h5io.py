"""All HDF5 reading and writing of the toolkit (the only module that imports h5py).

Layouts are the reference code's, so files go both ways between it and this toolkit:

direction file
    groups ``xdirection`` and (2D) ``ydirection`` holding datasets ``"0" .. "N-1"``, one per
    tensor; attributes record how the directions were made and the tensor names and shapes.
surface file
    ``dir_file`` (string), ``xcoordinates`` and (2D) ``ycoordinates`` (float64), and per metric
    a float64 array filled with a placeholder (-1; +1 for ``min_eig``) until computed. Arrays
    are 1D ``(nx,)`` or 2D ``(ny, nx)`` with ``Z[iy, ix] = f(x[ix], y[iy])``: the reference's
    flat order, so square grids are identical to its files and non-square ones are correct.
    Completion is tracked explicitly in ``<group>_done`` (uint8, same shape), so a true 0 is
    never mistaken for "not computed".

Every function opens and closes its file; nothing returns a live h5py object. Files are
created without ever replacing an existing one, and results are written by copying the file,
updating the copy and renaming it over the original (:mod:`._files`), so a process killed at any
moment leaves either the old or the new complete file, never a damaged one.

Attributes: strings, booleans and numbers are stored as they are; anything else (lists, dicts) as
JSON text, which the readers decode again, so callers see the values they wrote.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import h5py
import numpy as np

from . import _files
from .errors import FileFormatError, UsageError, one_line

H5PY_VERSION = h5py.__version__
COORD_KEYS = ("xcoordinates", "ycoordinates")
DIR_GROUPS = ("xdirection", "ydirection")
PCA_KEYS = ("explained_variance_ratio_", "singular_values_", "explained_variance_")
DONE_SUFFIX = "_done"
SHARD_KEY = "shard_points"  # flat indices assigned to a shard file (see cli_job)
HESSIAN_CENTRE = "hessian_centre"  # group of plot_hessian_eigen.py's centre-point results


class AlreadyExists(FileFormatError):
    """The file to create exists already (possibly made a moment ago by a concurrent job)."""


@dataclass(frozen=True)
class MetricGroup:
    """Metrics computed together at a grid point, with their placeholder values.

    ``keys[0]`` decides completion in files without a ``<name>_done`` mask (the reference's
    files): a point counts as done where it differs from its placeholder.
    """

    name: str
    keys: tuple[str, ...]
    fills: tuple[float, ...]

    @property
    def done_key(self) -> str:
        return self.name + DONE_SUFFIX


TRAIN = MetricGroup("train", ("train_loss", "train_acc"), (-1.0, -1.0))
TEST = MetricGroup("test", ("test_loss", "test_acc"), (-1.0, -1.0))
TRAIN_LOSS = MetricGroup("train", ("train_loss",), (-1.0,))  # losses without accuracy (regression, ...)
TEST_LOSS = MetricGroup("test", ("test_loss",), (-1.0,))
EIG = MetricGroup("eig", ("max_eig", "min_eig", "eig_hvps"), (-1.0, 1.0, -1.0))


# --------------------------------------------------------------------------- opening
# What h5py and our readers raise on a file that opens but is damaged inside, or laid out otherwise
_DAMAGED = (OSError, KeyError, RuntimeError, TypeError, ValueError, AttributeError, IndexError)


@contextlib.contextmanager
def _open(path: str, mode: str = "r", *, what: str = "HDF5 file", name: str = "") -> Iterator[h5py.File]:
    """Open ``path`` with h5py; any failure, at opening or inside the block, becomes one
    FileFormatError naming the file (``name`` when ``path`` is a temporary copy of it)."""
    name = name or path
    if mode == "r" and not os.path.isfile(path):
        raise FileFormatError(f"{what} not found: {name}")
    try:
        f = h5py.File(path, mode, locking="best-effort")
    except OSError as exc:
        raise FileFormatError(
            f"cannot open {name} as HDF5 ({one_line(exc, 160)}): the file is truncated, still being "
            f"written by another program, or not an HDF5 file") from None
    try:
        with f:
            yield f
    except UsageError:
        raise
    except _DAMAGED as exc:
        if mode != "r":
            raise FileFormatError(f"cannot update {what} {name} ({one_line(exc, 160)}); it was left "
                                  f"as it was") from None
        raise FileFormatError(f"cannot read {what} {name} ({one_line(exc, 160)}): it is damaged, or "
                              f"not laid out as this toolkit and the reference code write it") from None


def _create_new(path: str, fill) -> None:
    """Write a new file with ``fill(h5file)`` and publish it atomically, never replacing one."""
    with _files.reporting_write_errors(path):
        try:
            with _files.creating(path) as tmp, h5py.File(tmp, "w", locking="best-effort") as f:
                fill(f)
        except FileExistsError:
            raise AlreadyExists(f"{path} already exists; not overwriting it") from None


def _write_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, (str, bool, int, float, np.integer, np.floating)):
            obj.attrs[key] = value
        else:
            obj.attrs[key] = json.dumps(value)


def _read_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    """Attributes as Python values; JSON text written by :func:`_write_attrs` decoded again."""
    out = {}
    for key, value in obj.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, str) and value[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        out[key] = value
    return out


# --------------------------------------------------------------------------- directions
@dataclass(frozen=True)
class DirectionFile:
    """The content of a direction file: ``directions[0]`` is x, ``directions[1]`` (if any) y."""

    path: str
    directions: list[list[np.ndarray]]
    attrs: dict[str, Any]
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """sha256 of every stored array (dtype, shape, bytes), in file order."""
        return arrays_fingerprint(a for direction in self.directions for a in direction)


def arrays_fingerprint(arrays: Iterable[Any]) -> str:
    """sha256 of the dtype, shape and bytes of each array (numpy, or anything np.asarray takes), in order."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_direction_file(path: str, directions: Sequence[Sequence[np.ndarray]], *,
                         attrs: Mapping[str, Any], extras: Mapping[str, np.ndarray] | None = None) -> None:
    """Create a direction file (refuses to replace an existing file)."""
    if not 1 <= len(directions) <= 2:
        raise ValueError("expected one or two directions")

    def fill(f: h5py.File) -> None:
        for group_name, direction in zip(DIR_GROUPS, directions):
            group = f.create_group(group_name)
            for i, tensor in enumerate(direction):
                group.create_dataset(str(i), data=np.asarray(tensor))
        for key, value in (extras or {}).items():
            f.create_dataset(key, data=value)
        _write_attrs(f, attrs)

    _create_new(path, fill)


def read_direction_file(path: str) -> DirectionFile:
    """Read a direction file (ours or the reference's) fully into memory.

    Raises:
        FileFormatError: missing, unreadable, a surface file, or no ``xdirection`` group.
    """
    with _open(path, what="direction file") as f:
        _check_direction_file(f, path)
        directions = []
        for group_name in DIR_GROUPS:
            if group_name not in f:
                break
            group = f[group_name]
            names = [str(i) for i in range(len(group))]
            if sorted(group.keys()) != sorted(names):
                raise FileFormatError(
                    f"{path}: group {group_name} must hold datasets '0'..'{len(group) - 1}'; "
                    f"it has {sorted(group.keys())[:8]}")
            directions.append([group[name][()] for name in names])
        return DirectionFile(path, directions, _read_attrs(f), _pca_extras(f))


def read_direction_extras(path: str) -> dict[str, np.ndarray]:
    """Only the PCA arrays of a direction file (``explained_variance_ratio_`` ...), without
    reading the directions themselves; empty for random directions.

    Raises:
        FileFormatError: as :func:`read_direction_file`.
    """
    with _open(path, what="direction file") as f:
        _check_direction_file(f, path)
        return _pca_extras(f)


def _check_direction_file(f: h5py.File, path: str) -> None:
    if "xdirection" not in f:
        hint = (" (it is a surface file: pass it as --surf_file, and its direction file "
                "as --dir_file)" if "xcoordinates" in f else "")
        raise FileFormatError(
            f"{path} is not a direction file: it has no 'xdirection' group"
            f"{hint}; top-level keys: {sorted(f.keys())[:8]}")


def _pca_extras(f: h5py.File) -> dict[str, np.ndarray]:
    return {k: f[k][()] for k in PCA_KEYS if k in f}


# --------------------------------------------------------------------------- projections
@dataclass(frozen=True)
class ProjectionFile:
    """A trajectory projected onto two directions: one (x, y) per checkpoint, in epoch order."""

    path: str
    xcoord: np.ndarray
    ycoord: np.ndarray
    attrs: dict[str, Any]


def write_projection_file(path: str, xcoord: np.ndarray, ycoord: np.ndarray, *,
                          attrs: Mapping[str, Any]) -> None:
    """Create a projection file (``proj_xcoord``, ``proj_ycoord``; refuses to replace a file)."""

    def fill(f: h5py.File) -> None:
        f["proj_xcoord"] = np.asarray(xcoord, dtype=np.float64)
        f["proj_ycoord"] = np.asarray(ycoord, dtype=np.float64)
        _write_attrs(f, attrs)

    _create_new(path, fill)


def read_projection_file(path: str) -> ProjectionFile:
    """Read a projection file (ours or the reference's).

    Raises:
        FileFormatError: missing, unreadable, or without ``proj_xcoord``/``proj_ycoord``.
    """
    with _open(path, what="projection file") as f:
        if "proj_xcoord" not in f or "proj_ycoord" not in f:
            raise FileFormatError(
                f"{path} is not a projection file: it needs 'proj_xcoord' and 'proj_ycoord' "
                f"(made by plot_trajectory.py); top-level keys: {sorted(f.keys())[:8]}")
        return ProjectionFile(path, np.asarray(f["proj_xcoord"][()], dtype=np.float64),
                              np.asarray(f["proj_ycoord"][()], dtype=np.float64), _read_attrs(f))


# --------------------------------------------------------------------------- surfaces
@dataclass
class SurfaceFile:
    """A surface file in memory. 2D arrays are ``(ny, nx)``; masks are bool."""

    path: str
    dir_file: str
    xcoordinates: np.ndarray
    ycoordinates: np.ndarray | None
    arrays: dict[str, np.ndarray]
    done: dict[str, np.ndarray]
    attrs: dict[str, Any]
    shard_points: np.ndarray | None = None
    groups: dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        nx = len(self.xcoordinates)
        return (nx,) if self.ycoordinates is None else (len(self.ycoordinates), nx)

    def done_mask(self, group: MetricGroup) -> np.ndarray:
        """Which points of ``group`` are computed (all False if the group is absent)."""
        if group.done_key in self.done:
            return self.done[group.done_key]
        if group.keys[0] in self.arrays:  # a file without masks: the reference's rule
            return self.arrays[group.keys[0]] != group.fills[0]
        return np.zeros(self.shape, dtype=bool)

    def done_masks(self, groups: Sequence[MetricGroup]) -> dict[str, np.ndarray]:
        """``{group name: done mask}``, the input of ``scheduler.remaining_points``."""
        return {g.name: self.done_mask(g) for g in groups}


def create_surface_file(path: str, *, dir_file: str, xcoordinates: np.ndarray,
                        ycoordinates: np.ndarray | None, attrs: Mapping[str, Any],
                        shard_points: np.ndarray | None = None) -> None:
    """Create an empty surface file (no metrics yet); refuses to replace an existing file.

    ``shard_points``: for a shard file, the flat indices of the points it is to compute.
    """

    def fill(f: h5py.File) -> None:
        f["dir_file"] = dir_file
        f["xcoordinates"] = np.asarray(xcoordinates, dtype=np.float64)
        if ycoordinates is not None:
            f["ycoordinates"] = np.asarray(ycoordinates, dtype=np.float64)
        if shard_points is not None:
            f[SHARD_KEY] = np.asarray(shard_points, dtype=np.int64)
        _write_attrs(f, attrs)

    _create_new(path, fill)


def read_surface_file(path: str) -> SurfaceFile:
    """Read a surface file (ours or the reference's) into memory.

    Raises:
        FileFormatError: missing, unreadable, a direction file, or without coordinates.
    """
    with _open(path, what="surface file") as f:
        if "xcoordinates" not in f:
            hint = (" (it is a direction file; surface files have 'xcoordinates' and the "
                    "loss arrays)" if "xdirection" in f else "")
            raise FileFormatError(
                f"{path} is not a surface file: it has no 'xcoordinates'{hint}; "
                f"top-level keys: {sorted(f.keys())[:8]}")
        x = np.asarray(f["xcoordinates"][()], dtype=np.float64).reshape(-1)
        y = np.asarray(f["ycoordinates"][()], dtype=np.float64).reshape(-1) if "ycoordinates" in f else None
        shape = (len(x),) if y is None else (len(y), len(x))
        dir_file = f["dir_file"][()] if "dir_file" in f else b""
        dir_file = dir_file.decode() if isinstance(dir_file, bytes) else str(dir_file)
        arrays, done, groups = {}, {}, {}
        shard_points = np.asarray(f[SHARD_KEY][()], dtype=np.int64) if SHARD_KEY in f else None
        for key, obj in f.items():
            if isinstance(obj, h5py.Group):  # results that are not grid arrays (hessian_centre)
                groups[key] = ({k: v[()] for k, v in obj.items() if isinstance(v, h5py.Dataset)},
                               _read_attrs(obj))
                continue
            if key in COORD_KEYS or key in ("dir_file", SHARD_KEY) or not isinstance(obj, h5py.Dataset):
                continue
            data = obj[()]
            if np.size(data) != int(np.prod(shape)):
                continue  # not a grid array
            # flat order is Z[iy*nx + ix] in ours and the reference's files alike
            data = np.asarray(data).reshape(shape)
            if key.endswith(DONE_SUFFIX):
                done[key] = data.astype(bool)
            else:
                arrays[key] = data.astype(np.float64)
        return SurfaceFile(path, dir_file, x, y, arrays, done, _read_attrs(f), shard_points, groups)


def write_surface_group(path: str, name: str, arrays: Mapping[str, np.ndarray],
                        attrs: Mapping[str, Any]) -> None:
    """Atomically (re)write the group ``name`` of a surface file: results that are not grid
    arrays (e.g. the Hessian spectrum at the centre), kept apart from the grid arrays."""
    with _replacing(path) as f:
        if name in f:
            del f[name]
        group = f.create_group(name)
        for key, value in arrays.items():
            group.create_dataset(key, data=np.asarray(value))
        _write_attrs(group, attrs)


def update_surface_file(path: str, *, groups: Sequence[MetricGroup] = (),
                        results: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                        attrs: Mapping[str, Any] | None = None) -> None:
    """Atomically add metric groups, write results and/or set attributes.

    Args:
        path: an existing surface file.
        groups: groups whose arrays and ``_done`` mask are created if missing (arrays filled
            with the group's placeholders; for a file that already has the arrays but no mask,
            the mask is derived with the reference's rule).
        results: ``{key: (flat_indices, values)}``; writing a group's first key's indices
            also marks them done in that group's mask. Keys must belong to ``groups`` or exist.
        attrs: root attributes to set.
    """
    with _replacing(path) as f:
        shape = _grid_shape(f)
        for group in groups:
            _ensure_group(f, group, shape)
        done_keys = {g.keys[0]: g.done_key for g in groups}
        for key, (index, values) in (results or {}).items():
            _set_flat(f[key], np.asarray(index, dtype=np.int64), np.asarray(values, dtype=np.float64))
            if key in done_keys:
                _set_flat(f[done_keys[key]], np.asarray(index, dtype=np.int64), 1)
        _write_attrs(f, attrs or {})


@contextlib.contextmanager
def _replacing(path: str) -> Iterator[h5py.File]:
    """Edit a copy of ``path`` and rename it over the original when the block succeeds: a
    process killed at any moment (or a full disk) leaves the old or the new complete file."""
    with _files.reporting_write_errors(path), _files.replacing(path) as tmp:
        shutil.copyfile(path, tmp)
        with _open(tmp, "r+", what="surface file", name=path) as f:
            yield f


def _grid_shape(f: h5py.File) -> tuple[int, ...]:
    nx = f["xcoordinates"].shape[0]
    return (nx,) if "ycoordinates" not in f else (f["ycoordinates"].shape[0], nx)


def _ensure_group(f: h5py.File, group: MetricGroup, shape: tuple[int, ...]) -> None:
    for key, fill in zip(group.keys, group.fills):
        if key not in f:
            f.create_dataset(key, data=np.full(shape, fill, dtype=np.float64))
    if group.done_key not in f:
        first = np.asarray(f[group.keys[0]][()]).reshape(shape)
        f.create_dataset(group.done_key, data=(first != group.fills[0]).astype(np.uint8))


def _set_flat(dataset: h5py.Dataset, index: np.ndarray, values) -> None:
    data = dataset[()]
    flat = data.reshape(-1)
    flat[index] = values
    dataset[...] = flat.reshape(data.shape)
