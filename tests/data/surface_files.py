"""Surface, direction and projection files for the plotting tests, written through h5_util as
plot_surface.py / plot_trajectory.py write them (import as ``data.surface_files``)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from loss_landscape_toolkit import h5io as h5_util

Fn = Callable[..., np.ndarray]


def grid_values(x: np.ndarray, y: np.ndarray | None, f: Fn) -> np.ndarray:
    """``f`` on the grid: ``(nx,)`` or ``(ny, nx)`` with ``Z[iy, ix] = f(x[ix], y[iy])``."""
    if y is None:
        return np.asarray(f(x), dtype=np.float64)
    xx, yy = np.meshgrid(x, y)  # (ny, nx)
    return np.asarray(f(xx, yy), dtype=np.float64)


def write_surface(path, x, y=None, loss: Fn | None = None, *, acc: Fn | None = None, test: bool = False,
                  done: np.ndarray | None = None, eig: tuple[Fn, Fn] | None = None,
                  eig_done: np.ndarray | None = None) -> str:
    """A surface file with ``train_loss = loss(...)`` and ``train_acc = acc(...)`` (default
    100 - 10 * loss), ``test_*`` = train + 0.5 / - 5 with ``test``, and ``max_eig``/``min_eig``
    from ``eig``. Only the points of ``done`` (default all) are written; the rest keep the
    placeholders, as in an interrupted run."""
    path = str(path)
    x = np.asarray(x, dtype=np.float64)
    y = None if y is None else np.asarray(y, dtype=np.float64)
    h5_util.create_surface_file(path, dir_file="d.h5", xcoordinates=x, ycoordinates=y, attrs={"model": "test"})
    groups, results = [], {}
    if loss is not None:
        z = grid_values(x, y, loss)
        a = grid_values(x, y, acc) if acc is not None else 100 - 10 * z
        index = _index(z.shape, done)
        groups.append(h5_util.TRAIN)
        results.update(train_loss=(index, z.ravel()[index]), train_acc=(index, a.ravel()[index]))
        if test:
            groups.append(h5_util.TEST)
            results.update(test_loss=(index, z.ravel()[index] + 0.5), test_acc=(index, a.ravel()[index] - 5))
    if eig is not None:
        hi, lo = grid_values(x, y, eig[0]), grid_values(x, y, eig[1])
        index = _index(hi.shape, eig_done)
        groups.append(h5_util.EIG)
        results.update(max_eig=(index, hi.ravel()[index]), min_eig=(index, lo.ravel()[index]))
    h5_util.update_surface_file(path, groups=groups, results=results)
    return path


def _index(shape, done) -> np.ndarray:
    if done is None:
        return np.arange(int(np.prod(shape)))
    return np.flatnonzero(np.asarray(done).ravel())


def write_pca_directions(path, ratio=(0.6, 0.25)) -> str:
    """A direction file with two tiny directions and the PCA extras."""
    path = str(path)
    dx, dy = [np.ones((2, 3), np.float32)], [np.ones((2, 3), np.float32)]
    extras = {"explained_variance_ratio_": np.asarray(ratio, dtype=np.float64),
              "singular_values_": np.array([3.0, 2.0]), "explained_variance_": np.array([1.5, 0.6])}
    h5_util.write_direction_file(path, [dx, dy], attrs={"made_by": "test"}, extras=extras)
    return path


def write_projection(path, xs, ys, epochs=None) -> str:
    path = str(path)
    attrs = {} if epochs is None else {"epochs": list(epochs)}
    h5_util.write_projection_file(path, np.asarray(xs), np.asarray(ys), attrs=attrs)
    return path
