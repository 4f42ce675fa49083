"""PCA directions of an optimization path, and the path projected onto two directions.

Figure 10 of the paper: stack the checkpoints of a training run as
rows ``checkpoint - final`` (one float64 entry per weight), take the top two principal
components of those rows as the x and y directions, and give every checkpoint its coordinates
in that plane. ``plot_surface.py --dir_file <directions.h5> --proj_file <proj file>`` then draws
the loss contours of the plane with the path on them.

The PCA is scikit-learn's ``PCA(n_components=2).fit(rows)`` computed by SVD, without
scikit-learn: rows are centred, ``singular_values_`` are those of the centred matrix,
``explained_variance_ = singular_values_**2 / (n - 1)`` and ``explained_variance_ratio_`` divides
by the total variance (the squared Frobenius norm of the centred matrix over ``n - 1``). The
(checkpoints x weights) matrix is held once, in float64, centred in place; its SVD comes from
the small triangular factor of a blockwise QR (the tall-skinny QR), so no second copy exists.

Which tensors take part: every floating tensor of the network (``weights``: the parameters;
``states``: every ``state_dict`` entry, BatchNorm running statistics included), flattened, a
0-dim one as one entry. Integer entries (BatchNorm's ``num_batches_tracked``, a step counter
rather than a position in weight space) take no part, on both sides: not in the PCA, not in
the projection, and zero in the stored directions. ``ignore="biasbn"`` also leaves out tensors
with dim <= 1 (biases, BatchNorm) from the PCA; their directions are zero.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import h5py
import numpy as np
import torch
from torch import nn

from . import h5io
from ._naming import checkpoint_path, proj_file_name
from ._options import IGNORES, PROJ_METHODS
from .directions import cosine_similarity, load_directions, named_tensors, save_directions, tensors_of
from .errors import FileFormatError, ModelError, UsageError
from .models.loading import load_checkpoint_state, load_state_into, state_fingerprint

__all__ = [
    "SIGN_CONVENTION",
    "Note",
    "checkpoint_epochs",
    "find_checkpoints",
    "saved_epochs",
    "Flattener",
    "PCAResult",
    "pca",
    "load_into",
    "Trajectory",
    "trajectory_matrix",
    "pca_directions",
    "Projector",
    "project_trajectory",
    "setup_pca_directions",
    "check_two_directions",
    "setup_projection",
]

SIGN_CONVENTION = ("each PC is oriented so that the first checkpoint has a negative coordinate on it "
                   "(the path runs towards the final model at the origin); if that coordinate is "
                   "exactly 0, so that the PC's largest-magnitude entry is positive")
MAX_CHECKPOINTS = 1_000_000  # of one path (no run saves more: the reference's has 301)
_QR_BLOCK_BYTES = 32 * 2**20  # a QR step copies at most this much of the matrix (1/16 of it if less)

Note = Callable[[str], None]


# --------------------------------------------------------------------------- checkpoints
def checkpoint_epochs(start_epoch: int, max_epoch: int, save_epoch: int) -> list[int]:
    """Epochs ``start_epoch, start_epoch + save_epoch, ...`` up to ``max_epoch``, always ending
    with ``max_epoch`` (the final model). (The reference stepped past ``max_epoch`` when the
    range was not a multiple of the stride, and then demanded a checkpoint that was never saved.)

    Raises:
        UsageError: ``save_epoch < 1``, ``start_epoch < 0``, ``max_epoch < start_epoch``, or
            more than ``MAX_CHECKPOINTS`` epochs.
    """
    if save_epoch < 1:
        raise UsageError(f"--save_epoch must be >= 1, got {save_epoch}")
    if start_epoch < 0 or max_epoch < start_epoch:
        raise UsageError(f"need 0 <= --start_epoch <= --max_epoch, got --start_epoch {start_epoch} "
                         f"--max_epoch {max_epoch}")
    count = (max_epoch - start_epoch) // save_epoch + 1
    if count > MAX_CHECKPOINTS:
        raise UsageError(f"--start_epoch {start_epoch} --max_epoch {max_epoch} --save_epoch {save_epoch} asks for "
                         f"{count} checkpoints, more than {MAX_CHECKPOINTS}; check --max_epoch (the last epoch "
                         f"saved) or raise --save_epoch")
    epochs = list(range(start_epoch, max_epoch + 1, save_epoch))
    if epochs[-1] != max_epoch:
        epochs.append(max_epoch)
    return epochs


def find_checkpoints(model_folder: str, epochs: Sequence[int], *, prefix: str, suffix: str) -> list[str]:
    """The checkpoint file of every epoch, all checked before any is read.

    Raises:
        ModelError: the folder is missing, or some files are: all of them named in one line,
            with the epochs that do exist there.
    """
    if not os.path.isdir(model_folder):
        raise ModelError(f"--model_folder {model_folder!r} is not a folder (relative to {os.getcwd()}); "
                         f"pass the folder holding the checkpoints {prefix}{{epoch}}{suffix}")
    files = [checkpoint_path(model_folder, e, prefix=prefix, suffix=suffix) for e in epochs]
    missing = [os.path.basename(f) for f in files if not os.path.isfile(f)]
    if missing:
        found = saved_epochs(model_folder, prefix=prefix, suffix=suffix)
        there = (f"epochs found there: {_epoch_list(found)}" if found
                 else f"no {prefix}{{epoch}}{suffix} files are there")
        raise ModelError(
            f"missing {len(missing)} of {len(files)} checkpoints in {model_folder}: {', '.join(missing)} "
            f"({there}); check --start_epoch/--max_epoch/--save_epoch and --prefix/--suffix")
    return files


def saved_epochs(model_folder: str, *, prefix: str, suffix: str) -> list[int]:
    """Epochs ``e`` with a file ``{prefix}{e}{suffix}`` in the folder, ascending."""
    out = []
    for name in os.listdir(model_folder):
        if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix):
            middle = name[len(prefix):len(name) - len(suffix)]
            if middle.isdigit():
                out.append(int(middle))
    return sorted(out)


def _epoch_list(epochs: Sequence[int], limit: int = 12) -> str:
    if len(epochs) <= limit:
        return ", ".join(map(str, epochs))
    head = ", ".join(map(str, epochs[: limit - 2]))
    return f"{head}, ..., {epochs[-1]} ({len(epochs)} files)"


# --------------------------------------------------------------------------- flat vectors
class Flattener:
    """Maps the tensors of a network (one ``dir_type``) to one float64 vector and back.

    The vector holds every floating tensor that takes part, in order, flattened (a 0-dim tensor
    as one entry); integer tensors never take part, and with ``ignore="biasbn"`` neither do
    tensors with dim <= 1.
    """

    def __init__(self, named: Sequence[tuple[str, torch.Tensor]], *, ignore: str = "none"):
        if ignore not in IGNORES:
            raise ValueError(f"ignore must be one of {IGNORES}, got {ignore!r}")
        self.shapes = [tuple(t.shape) for _, t in named]
        self.dtypes = [t.dtype for _, t in named]
        self.parts: list[tuple[int, int, int]] = []  # (tensor index, start, stop) in the vector
        size = 0
        for i, (_, t) in enumerate(named):
            if t.is_floating_point() and not (ignore == "biasbn" and t.dim() <= 1):
                self.parts.append((i, size, size + t.numel()))
                size += t.numel()
        self.size = size

    def flatten_into(self, tensors: Sequence[Any], out: np.ndarray) -> np.ndarray:
        """Write the entries of ``tensors`` (tensors or arrays, in network order) into ``out``."""
        if len(tensors) != len(self.shapes):
            raise ValueError(f"expected {len(self.shapes)} tensors, got {len(tensors)}")
        for i, start, stop in self.parts:
            t = torch.as_tensor(tensors[i]).detach()
            if tuple(t.shape) != self.shapes[i]:
                raise ValueError(f"tensor {i} has shape {tuple(t.shape)}, expected {self.shapes[i]}")
            out[start:stop] = t.cpu().reshape(-1).numpy()
        return out

    def flatten(self, tensors: Sequence[Any]) -> np.ndarray:
        """A new float64 vector of the entries of ``tensors``."""
        return self.flatten_into(tensors, np.empty(self.size, dtype=np.float64))

    def unflatten(self, vector: np.ndarray) -> list[torch.Tensor]:
        """Tensors shaped like the network's, in its order and floating dtypes (float32 for
        integer entries), holding ``vector``'s entries; tensors that take no part are zero."""
        out = [torch.zeros(shape, dtype=dtype if dtype.is_floating_point else torch.float32)
               for shape, dtype in zip(self.shapes, self.dtypes)]
        for i, start, stop in self.parts:
            out[i].copy_(torch.from_numpy(vector[start:stop]).view(self.shapes[i]))
        return out


# --------------------------------------------------------------------------- PCA
@dataclass(frozen=True)
class PCAResult:
    """The top principal components of the rows of a matrix, with scikit-learn's meanings."""

    components: np.ndarray  # (k, p) unit rows
    singular_values_: np.ndarray  # (k,) of the centred matrix
    explained_variance_: np.ndarray  # (k,) singular_values_**2 / (n - 1)
    explained_variance_ratio_: np.ndarray  # (k,) explained_variance_ / total variance


def pca(matrix: np.ndarray, *, n_components: int = 2) -> PCAResult:
    """PCA of the rows of ``matrix``, as ``sklearn.decomposition.PCA(n_components).fit``.

    The matrix is CENTRED IN PLACE (its column means subtracted), so it is never copied. Its
    SVD is ``M = U S V^T``; with the tall-skinny QR ``M^T = Q R`` (one block of columns at a
    time) and the SVD ``R^T = U S W^T``, the components are ``V[:, k] = M^T U[:, k] / S[k]``.
    Components are oriented by :data:`SIGN_CONVENTION` (row 0 of the uncentred matrix gets a
    negative coordinate).

    Args:
        matrix: ``(n, p)`` float64, C-contiguous; centred in place.
        n_components: ``1 <= k <= min(n - 1, p)`` (centring removes one dimension).

    Returns:
        :class:`PCAResult`.

    Raises:
        ValueError: a matrix that is not float64 C-contiguous 2D, too few rows, or all rows equal.
    """
    if matrix.dtype != np.float64 or matrix.ndim != 2 or not matrix.flags.c_contiguous:
        raise ValueError("matrix must be a C-contiguous 2D float64 array")
    n, p = matrix.shape
    if not 1 <= n_components <= min(n - 1, p):
        raise ValueError(f"need 1 <= n_components <= min(rows - 1, columns) (centring removes one "
                         f"dimension); got a {n} x {p} matrix and n_components={n_components}")
    first = matrix[0].copy()
    matrix -= matrix.mean(axis=0)
    total = float(np.vdot(matrix.ravel(), matrix.ravel())) / (n - 1)
    if total == 0.0:
        raise ValueError("all rows are equal: there is no variance to decompose")
    u, s, _ = np.linalg.svd(_r_factor(matrix).T)  # M = R^T Q^T, so M's left vectors are u
    components = np.empty((n_components, p))
    for k in range(n_components):
        np.dot(u[:, k], matrix, out=components[k])  # (p,) = M^T u_k = s_k v_k
        components[k] /= np.linalg.norm(components[k])
        coord = float(first @ components[k])
        if coord > 0 or (coord == 0 and components[k][np.argmax(np.abs(components[k]))] < 0):
            components[k] *= -1
    variance = s[:n_components] ** 2 / (n - 1)
    return PCAResult(components, s[:n_components].copy(), variance, variance / total)


def _r_factor(matrix: np.ndarray) -> np.ndarray:
    """R (n x n) of the QR factorization ``matrix^T = Q R``, one block of columns at a time, so
    only one block is ever copied (LAPACK needs its own column-major copy)."""
    n, p = matrix.shape
    block = max(n, min(_QR_BLOCK_BYTES, matrix.nbytes // 16) // (8 * n))
    r = np.zeros((0, n))
    for start in range(0, p, block):
        stacked = np.vstack([r, matrix[:, start:start + block].T])  # (rows, n)
        r = np.linalg.qr(stacked, mode="r")
    return r


# --------------------------------------------------------------------------- the trajectory
def load_into(model: nn.Module, path: str) -> None:
    """Load a checkpoint into ``model``, with the toolkit's checks and one-line errors."""
    load_state_into(model, load_checkpoint_state(path), source=path)


class Trajectory:
    """The checkpoints of a training path, one model to read them into, and the final model.

    The final checkpoint (the last file, the origin of the plane) is read from disk once, here;
    :meth:`at_final` puts it back into the model from memory, and :meth:`each` walks the path
    reading every other checkpoint once.
    """

    def __init__(self, model: nn.Module, files: Sequence[str], epochs: Sequence[int]):
        if len(files) != len(epochs) or not files:
            raise ValueError(f"need one file per epoch, got {len(files)} files for {len(epochs)} epochs")
        self.model, self.files, self.epochs = model, list(files), list(epochs)
        self.final_file = self.files[-1]
        self._final_state = load_checkpoint_state(self.final_file)
        self.final_fingerprint = state_fingerprint(self.at_final())

    def at_final(self) -> nn.Module:
        """The model, holding the final weights."""
        load_state_into(self.model, self._final_state, source=self.final_file)
        return self.model

    def each(self) -> Iterator[str]:
        """Load every checkpoint into the model in turn, yielding its file."""
        for path in self.files:
            if path == self.final_file:
                self.at_final()
            else:
                load_into(self.model, path)
            yield path


def trajectory_matrix(trajectory: Trajectory, *, dir_type: str, ignore: str = "none",
                      note: Note | None = None) -> tuple[np.ndarray, Flattener]:
    """Rows ``checkpoint - final`` of every file, float64 ``(len(files), p)``, allocated once.

    Leaves the model holding the last file's weights, the final ones.
    """
    model = trajectory.at_final()
    flat = Flattener(named_tensors(model, dir_type), ignore=ignore)
    final = flat.flatten(tensors_of(model, dir_type))
    matrix = np.empty((len(trajectory.files), flat.size))
    for i, path in enumerate(trajectory.each()):
        if note:
            note(f"reading {path}")
        flat.flatten_into(tensors_of(model, dir_type), matrix[i])
        matrix[i] -= final
    return matrix, flat


def pca_directions(trajectory: Trajectory, *, dir_type: str, ignore: str = "none",
                   note: Note | None = None) -> tuple[list[list[torch.Tensor]], PCAResult]:
    """The top two principal components of the checkpoints, as directions (lists of tensors
    shaped like the network's, in ``dir_type`` order).

    Raises:
        UsageError: fewer than 3 checkpoints, or all checkpoints equal.
    """
    if len(trajectory.files) < 3:
        raise UsageError(f"PCA of a path needs at least 3 checkpoints, got {len(trajectory.files)}; lower "
                         f"--save_epoch or widen --start_epoch..--max_epoch")
    matrix, flat = trajectory_matrix(trajectory, dir_type=dir_type, ignore=ignore, note=note)
    try:
        result = pca(matrix)
    except ValueError as exc:
        raise UsageError(f"cannot compute PCA directions: {exc} (are the checkpoints copies of one model?)") from None
    del matrix
    if note and result.singular_values_[1] <= 1e-9 * result.singular_values_[0]:
        note("note: the checkpoints lie on a straight line, so PC2 is arbitrary")
    return [flat.unflatten(c) for c in result.components], result


class Projector:
    """Coordinates of flat vectors in the plane of two directions.

    ``cos``: ``x = <d, dx> / |dx|``, ``y = <d, dy> / |dy|`` (exact for orthogonal directions,
    such as PCA's); ``lstsq``: the ``(x, y)`` minimizing ``|x dx + y dy - d|`` (exact for any two
    independent directions: a point of the plane gets back its coordinates).
    """

    def __init__(self, dx: np.ndarray, dy: np.ndarray, *, method: str):
        if method not in PROJ_METHODS:
            raise ValueError(f"method must be one of {PROJ_METHODS}, got {method!r}")
        self.method = method
        norms = np.array([np.linalg.norm(dx), np.linalg.norm(dy)])
        if not np.all(norms > 0):
            raise FileFormatError("a direction is zero on every tensor that moves; cannot project onto it")
        if method == "cos":
            self._basis = (dx / norms[0], dy / norms[1])
        else:
            q, r = np.linalg.qr(np.stack([dx, dy], axis=1))  # (p, 2), (2, 2)
            if abs(r[1, 1]) <= 1e-10 * abs(r[0, 0]):
                raise FileFormatError("the x and y directions are parallel, so lstsq has no unique "
                                      "solution; use --proj_method cos")
            self._q, self._r = q, r

    def __call__(self, d: np.ndarray) -> tuple[float, float]:
        if self.method == "cos":
            return float(d @ self._basis[0]), float(d @ self._basis[1])
        x, y = np.linalg.solve(self._r, self._q.T @ d)
        return float(x), float(y)


def project_trajectory(trajectory: Trajectory, directions: Sequence[Sequence[Any]], *, dir_type: str,
                       method: str = "cos", note: Note | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of every checkpoint's ``checkpoint - final`` in the plane of ``directions``.

    The final model is at (0, 0). Every floating tensor takes part (directions of ignored
    tensors are zero anyway); integer ones do not, as in :func:`pca_directions`.

    Returns:
        ``(xcoord, ycoord)``, float64, one entry per file.
    """
    model = trajectory.at_final()
    flat = Flattener(named_tensors(model, dir_type))
    final = flat.flatten(tensors_of(model, dir_type))
    project = Projector(flat.flatten(directions[0]), flat.flatten(directions[1]), method=method)
    xs, ys = np.empty(len(trajectory.files)), np.empty(len(trajectory.files))
    d = np.empty(flat.size)
    for i, path in enumerate(trajectory.each()):
        flat.flatten_into(tensors_of(model, dir_type), d)
        d -= final
        xs[i], ys[i] = project(d)
        if note:
            note(f"{path}  ({xs[i]:.4f}, {ys[i]:.4f})")
    return xs, ys


# --------------------------------------------------------------------------- files
def setup_pca_directions(trajectory: Trajectory, *, dir_file: str, dir_type: str, ignore: str,
                         attrs: Mapping[str, Any], note: Note = print) -> bool:
    """Create the PCA direction file, or check that the existing one was made from these
    checkpoints. Returns True if it was created.

    The file has the reference layout (``xdirection``/``ydirection`` groups of datasets "0"..,
    ``explained_variance_ratio_``, ``singular_values_``, ``explained_variance_``) plus attributes:
    ``attrs`` and how the PCA was made (epochs, files, final model's fingerprint, signs).

    Raises:
        FileFormatError: the existing file is not a PCA direction file, or was made from other
            checkpoints, settings or final weights (it is never overwritten).
    """
    mine = _pca_identity(trajectory, dir_type=dir_type, ignore=ignore)
    if os.path.exists(dir_file):
        _check_existing_pca(dir_file, mine)
        note(f"PCA directions: reusing {dir_file}")
        return False
    directions, result = pca_directions(trajectory, dir_type=dir_type, ignore=ignore, note=note)
    cos = cosine_similarity(*directions)
    note(f"angle between pc1 and pc2: cos = {cos:.3g}")
    note(f"explained_variance_ratio_: {result.explained_variance_ratio_}")
    os.makedirs(os.path.dirname(dir_file) or ".", exist_ok=True)
    save_directions(
        dir_file, directions, named=named_tensors(trajectory.at_final(), dir_type),
        attrs={**attrs, **mine, "sign_convention": SIGN_CONVENTION,
               "x_direction": "PC1 of (checkpoint - final) over the epochs",
               "y_direction": "PC2 of (checkpoint - final) over the epochs",
               "centring": "rows centred as scikit-learn's PCA (mean of the rows subtracted)",
               "pc_cosine": cos},
        extras={"explained_variance_ratio_": result.explained_variance_ratio_,
                "singular_values_": result.singular_values_,
                "explained_variance_": result.explained_variance_})
    note(f"PCA directions saved in: {dir_file}")
    return True


def _pca_identity(trajectory: Trajectory, *, dir_type: str, ignore: str) -> dict[str, Any]:
    """What makes two PCA direction files the same."""
    return {"method": "pca", "dir_type": dir_type, "ignore": ignore, "epochs": trajectory.epochs,
            "model_files": [os.path.basename(f) for f in trajectory.files],
            "final_model_file": trajectory.final_file, "model_fingerprint": trajectory.final_fingerprint}


def _check_existing_pca(dir_file: str, mine: Mapping[str, Any]) -> None:
    dfile = h5io.read_direction_file(dir_file)
    move = "move it away to compute new directions, or pass it as --dir_file to project onto it anyway"
    if len(dfile.directions) < 2 or "explained_variance_" not in dfile.extras:
        raise FileFormatError(f"{dir_file} exists but is not a PCA direction file (no "
                              f"explained_variance_ or no ydirection); {move}")
    if dfile.attrs.get("method") != "pca":
        return  # a file of the reference code: reused as the reference does
    for key in ("dir_type", "ignore", "epochs", "model_fingerprint"):
        theirs = dfile.attrs.get(key)
        if theirs is not None and theirs != mine[key]:
            what = {"model_fingerprint": ("other final weights (the checkpoint changed since)", "these"),
                    "epochs": (f"the checkpoints of epochs {_epoch_list(theirs)}",
                               f"epochs {_epoch_list(mine[key])}")}.get(key, (f"{key}={theirs}", mine[key]))
            raise FileFormatError(f"{dir_file} was made from {what[0]}, not this run's ({what[1]}); {move}")


def check_two_directions(dir_file: str) -> None:
    """Refuse a direction file that holds an x direction only: a path is projected onto two.

    A missing or unreadable file passes here; :func:`setup_projection` reports it.

    Raises:
        FileFormatError: saying how to get a file with both directions.
    """
    try:
        with h5py.File(dir_file, "r") as f:
            x_only = h5io.DIR_GROUPS[0] in f and h5io.DIR_GROUPS[1] not in f
    except OSError:
        return
    if x_only:
        raise FileFormatError(
            f"{dir_file} holds only an x direction, but a path is projected onto two (x and y); pass "
            f"--dir_file a direction file with both (a PCA one, or one made by plot_surface.py with --y), "
            f"or leave out --dir_file to compute PCA directions from the checkpoints")


def setup_projection(trajectory: Trajectory, *, dir_file: str, dir_type: str, method: str,
                     attrs: Mapping[str, Any], note: Note = print) -> tuple[h5io.ProjectionFile, h5io.DirectionFile]:
    """Project the checkpoints onto the directions of ``dir_file`` into ``{dir_file}_proj_{method}.h5``,
    or check that the existing projection file is of these checkpoints and directions.

    The file holds ``proj_xcoord``, ``proj_ycoord`` (float64, one entry per checkpoint) and the
    attribute ``epochs`` (the epoch of each entry) besides ``attrs``.

    Returns:
        The projection (as written, or as read when reused) and the direction file.

    Raises:
        FileFormatError: a direction file that does not fit the model or has one direction, or
            an existing projection file of other checkpoints or directions.
    """
    check_two_directions(dir_file)
    dfile = load_directions(dir_file, trajectory.at_final(), dir_type=dir_type, ndirections=2)
    proj_file = proj_file_name(dir_file, method)
    mine = {"epochs": trajectory.epochs, "dir_fingerprint": dfile.fingerprint, "method": method,
            "model_fingerprint": trajectory.final_fingerprint}
    if os.path.exists(proj_file):
        proj = _check_existing_projection(proj_file, mine, len(trajectory.files))
        note(f"projection: reusing {proj_file}")
        return proj, dfile
    xs, ys = project_trajectory(trajectory, dfile.directions, dir_type=dir_type, method=method, note=note)
    proj_attrs = {**attrs, **mine, "dir_file": dir_file, "dir_type": dir_type,
                  "model_files": [os.path.basename(f) for f in trajectory.files],
                  "final_model_file": trajectory.final_file}
    h5io.write_projection_file(proj_file, xs, ys, attrs=proj_attrs)
    note(f"projection saved in: {proj_file}")
    return h5io.ProjectionFile(proj_file, xs, ys, proj_attrs), dfile


def _check_existing_projection(proj_file: str, mine: Mapping[str, Any], count: int) -> h5io.ProjectionFile:
    proj = h5io.read_projection_file(proj_file)
    move = "move it away to project again"
    if len(proj.xcoord) != count:
        raise FileFormatError(f"{proj_file} holds {len(proj.xcoord)} points but there are {count} "
                              f"checkpoints; {move}")
    for key in ("epochs", "dir_fingerprint", "model_fingerprint"):
        theirs = proj.attrs.get(key)
        if theirs is not None and theirs != mine[key]:
            raise FileFormatError(f"{proj_file} was made with other {key.replace('_', ' ')} than this "
                                  f"run; {move}")
    return proj
