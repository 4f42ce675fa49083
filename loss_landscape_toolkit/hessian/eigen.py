"""Eigenvalues of the Hessian: lambda_max and lambda_min (three methods), and the top k.

Our Lanczos (full reorthogonalization, on the operator's device) serves both
:func:`extreme_eigenvalues` (default method, with a lookahead that confirms convergence) and
:func:`top_eigenvalues`; ``"eigsh"`` is ARPACK's both-ends mode, and
:func:`reference_extreme_eigenvalues` is the reference code's method (hess_vec_prod.py), kept
for comparison. The stopping rule reads ``LOOKAHEAD_MIN`` and ``LOOKAHEAD_FRACTION`` from this
module at every check, so set them here to change it. The Lanczos run itself (:func:`_lanczos`)
also gives the spectral density its quadratures (spectrum.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from .._options import EIGEN_METHODS
from .operator import HessianOperator, NonFiniteHessian

REFERENCE_SHIFT = 0.51  # the reference shifts by 0.51 * lambda_max to reach the other end
LOOKAHEAD_MIN = 3  # Lanczos confirms convergence after this many more HVPs ...
LOOKAHEAD_FRACTION = 0.25  # ... or this fraction of the HVPs so far, whichever is larger


# --------------------------------------------------------------------------- Lanczos
class _Basis:
    """Orthonormal Lanczos vectors as rows of a tensor that grows by doubling."""

    def __init__(self, size: int, *, capacity: int, dtype: torch.dtype, device: torch.device):
        self._rows = torch.empty(max(capacity, 1), size, dtype=dtype, device=device)
        self.count = 0

    def append(self, q: torch.Tensor) -> None:
        if self.count == self._rows.shape[0]:
            grown = self._rows.new_empty(2 * self.count, self._rows.shape[1])
            grown[:self.count] = self._rows
            self._rows = grown
        self._rows[self.count] = q
        self.count += 1

    @property
    def rows(self) -> torch.Tensor:  # (count, n)
        return self._rows[:self.count]


@dataclass
class _Krylov:
    """State of a Lanczos run: T = tridiag(betas, alphas, betas) and the basis Q, H Q ~ Q T."""

    alphas: list[float]
    betas: list[float]  # betas[j] couples q_j and q_{j+1}; the last one is the residual norm
    basis: _Basis
    exhausted: bool = False  # the Krylov space is invariant: Ritz values are exact

    def ritz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ritz values (ascending), their eigenvectors in T, and residual norms ||H y - t y||."""
        theta, s = eigh_tridiagonal(np.asarray(self.alphas), np.asarray(self.betas[:-1]))
        residual = np.zeros_like(theta) if self.exhausted else abs(self.betas[-1] * s[-1, :])
        return theta, s, residual

    def vectors(self, s: np.ndarray) -> torch.Tensor:
        """Ritz vectors ``Q^T s`` for the columns of ``s``; shape (n, columns)."""
        rows = self.basis.rows[:len(self.alphas)]
        return rows.T @ torch.from_numpy(np.ascontiguousarray(s)).to(rows)


def _lanczos(op: HessianOperator, start: torch.Tensor, *, maxiter: int,
             done: Callable[[np.ndarray, np.ndarray], bool] | None) -> tuple[_Krylov, bool]:
    """Lanczos with full reorthogonalization from ``start``, at most ``maxiter`` HVPs.

    After every step the Ritz values of T are checked with ``done(theta, residuals)``; the
    run stops when it returns True, when the Krylov space is exhausted (then every Ritz value
    is exact), or after ``maxiter`` steps. Full reorthogonalization (two classical
    Gram-Schmidt passes) costs O(n * steps) per step, small next to an HVP, and keeps Ritz
    values from appearing twice.

    Returns:
        The Krylov state and whether ``done`` (or exhaustion) ended it.

    Raises:
        NonFiniteHessian: a product, or a coefficient of T, is NaN or inf.
    """
    eps = torch.finfo(op.dtype).eps
    basis = _Basis(op.size, capacity=min(maxiter, op.size, 16) + 1, dtype=op.dtype, device=op.device)
    q = start.to(device=op.device, dtype=op.dtype)
    q = q / q.norm()
    basis.append(q)
    krylov = _Krylov([], [], basis)
    for step in range(1, maxiter + 1):
        w = op.matvec(q)
        alpha = float(torch.dot(q, w))
        rows = basis.rows
        for _ in range(2):
            w -= rows.T @ (rows @ w)
        beta = float(w.norm())
        if not (math.isfinite(alpha) and math.isfinite(beta)):  # overflow of finite products
            raise NonFiniteHessian("Lanczos overflowed: the Hessian's entries are too large for "
                                   f"{op.dtype} at these weights")
        krylov.alphas.append(alpha)
        krylov.betas.append(beta)
        scale = max(abs(a) for a in krylov.alphas) + max(krylov.betas)
        if beta <= 100 * eps * scale or step == op.size:
            krylov.exhausted = True
            return krylov, True
        if done is not None and done(*krylov.ritz()[::2]):
            return krylov, True
        q = w / beta
        basis.append(q)
    return krylov, False


def _start_vector(op: HessianOperator, start: torch.Tensor | None, seed: int) -> torch.Tensor:
    """The Lanczos start: the sum of the unit columns of ``start`` (warm start from a
    neighbouring point's eigenvectors), else a Gaussian vector drawn on the CPU from ``seed``
    (the same on every device and every rank)."""
    if start is None:
        g = torch.Generator().manual_seed(seed)
        return torch.randn(op.size, generator=g, dtype=torch.float64).to(op.device, op.dtype)
    start = start.to(device=op.device, dtype=op.dtype).reshape(op.size, -1)
    norms = start.norm(dim=0)
    if not torch.all(norms > 0):
        raise ValueError("a warm-start vector is zero")
    return (start / norms).sum(dim=1)


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ExtremeEigen:
    """lambda_max and lambda_min of the Hessian at one point.

    Attributes:
        lambda_max: largest algebraic eigenvalue.
        lambda_min: smallest algebraic eigenvalue (negative where the loss is non-convex).
        hvps: Hessian-vector products used (each a pass over all data).
        vectors: ``(n, 2)`` unit eigenvector estimates for lambda_max and lambda_min, on the
            operator's device; pass them as ``start=`` at a neighbouring point.
        converged: whether the tolerance was reached within the iteration cap (if not, the
            values are the best estimates found).
        method: which method computed them.
    """

    lambda_max: float
    lambda_min: float
    hvps: int
    vectors: torch.Tensor = field(repr=False)
    converged: bool
    method: str


@dataclass(frozen=True)
class TopEigen:
    """The k largest algebraic eigenvalues (descending), their eigenvectors ``(n, k)``, the
    HVPs used and whether the tolerance was reached."""

    values: np.ndarray
    vectors: torch.Tensor = field(repr=False)
    hvps: int
    converged: bool


# --------------------------------------------------------------------------- eigenvalues
def _check_tol(tol: float, maxiter: int) -> None:
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    if maxiter < 1:
        raise ValueError(f"maxiter must be >= 1, got {maxiter}")


def extreme_eigenvalues(op: HessianOperator, *, tol: float = 1e-3, maxiter: int = 200,
                        start: torch.Tensor | None = None, seed: int = 0,
                        method: str = "lanczos") -> ExtremeEigen:
    """lambda_max and lambda_min: the largest and smallest ALGEBRAIC eigenvalues of H.

    Methods (all on the same operator, all counted in HVPs):

    - ``"lanczos"`` (default): our Lanczos with full reorthogonalization, on the device, from
      one start vector; both ends converge in the same Krylov space, and convergence is
      checked after every HVP: both Ritz residuals ``||H y - theta y||`` must be at most
      ``tol * max(|theta_max|, |theta_min|)``, and stay so, with both values moving by less
      than that, a few HVPs later (``LOOKAHEAD_MIN``, ``LOOKAHEAD_FRACTION``; this catches an
      extreme eigenvalue that surfaces late). Each eigenvalue is then within ``tol`` times
      the spectral norm of an eigenvalue of H, so the ratio lambda_min / lambda_max is
      accurate to about ``tol``. Memory: at most ``maxiter + 1`` vectors of n entries.
    - ``"eigsh"``: ARPACK (``scipy.sparse.linalg.eigsh``, ``which="BE"``, k=2) through
      :meth:`HessianOperator.to_scipy`; ARPACK's test is relative to each eigenvalue
      itself, so a small lambda_min costs more HVPs.
    - ``"reference"``: :func:`reference_extreme_eigenvalues`.

    Args:
        op: the Hessian operator (at the model's current weights).
        tol: relative tolerance (see above).
        maxiter: cap on HVPs for ``"lanczos"``; on ARPACK restarts for the others.
        start: warm start, e.g. ``previous.vectors`` from a neighbouring grid point: the
            Lanczos start is the sum of its unit columns (for ``"reference"``, column 0 starts
            the lambda_max run and column 1 the shifted run).
        seed: seed of the random start vector when ``start`` is None. The same seed gives the
            same start at every point, so results do not depend on which rank computes which
            point.
        method: one of ``EIGEN_METHODS``.

    Returns:
        :class:`ExtremeEigen`; ``converged`` is False when the cap was reached first.

    Raises:
        ValueError: unknown method, tol <= 0, maxiter < 1, or a zero warm-start vector.
        NonFiniteHessian: a product is NaN or inf (the loss is not finite around these weights).
    """
    _check_tol(tol, maxiter)
    if method == "lanczos":
        return _lanczos_extremes(op, tol=tol, maxiter=maxiter, start=start, seed=seed)
    if method == "eigsh":
        return _eigsh_extremes(op, tol=tol, maxiter=maxiter, start=start, seed=seed)
    if method == "reference":
        return reference_extreme_eigenvalues(op, tol=tol, maxiter=maxiter, start=start, seed=seed)
    raise ValueError(f"method must be one of {EIGEN_METHODS}, got {method!r}")


class _Confirmed:
    """Stopping rule: the watched Ritz pairs pass the residual test twice, ``lookahead`` steps
    apart, and their values moved by at most the tolerance in between.

    The residual test alone says a Ritz value is close to SOME eigenvalue; early in a run the
    extreme Ritz value can sit on the second eigenvalue of a close pair while the extreme one
    has not yet surfaced from the start vector (measured on a BatchNorm CNN: lambda_min off by
    3 x tol after 11 HVPs, right after 16). A few more steps expose it; the lookahead is
    ``max(LOOKAHEAD_MIN, ceil(LOOKAHEAD_FRACTION * steps))``.
    """

    def __init__(self, watched: Callable[[np.ndarray], np.ndarray], tol: float):
        self.watched, self.tol = watched, tol
        self.first: tuple[int, np.ndarray] | None = None

    def passes(self, theta: np.ndarray, residual: np.ndarray) -> bool:
        scale = max(abs(theta[0]), abs(theta[-1]))
        return bool(residual[self.watched(theta)].max() <= self.tol * scale)

    def __call__(self, theta: np.ndarray, residual: np.ndarray) -> bool:
        if not self.passes(theta, residual):
            self.first = None
            return False
        values = theta[self.watched(theta)]
        if self.first is None:
            self.first = (len(theta), values)
            return LOOKAHEAD_MIN == 0 and LOOKAHEAD_FRACTION == 0
        at, before = self.first
        if len(theta) < at + max(LOOKAHEAD_MIN, math.ceil(LOOKAHEAD_FRACTION * at)):
            return False
        scale = max(abs(theta[0]), abs(theta[-1]))
        if np.abs(values - before).max() <= self.tol * scale:
            return True
        self.first = (len(theta), values)
        return False


def _lanczos_extremes(op: HessianOperator, *, tol: float, maxiter: int,
                      start: torch.Tensor | None, seed: int) -> ExtremeEigen:
    rule = _Confirmed(lambda theta: np.array([0, len(theta) - 1]), tol)
    before = op.counter.count
    krylov, _ = _lanczos(op, _start_vector(op, start, seed), maxiter=maxiter, done=rule)
    theta, s, residual = krylov.ritz()
    vectors = krylov.vectors(s[:, [-1, 0]])
    return ExtremeEigen(float(theta[-1]), float(theta[0]), op.counter.count - before, vectors,
                        krylov.exhausted or (len(theta) >= 2 and rule.passes(theta, residual)),
                        "lanczos")


def _numpy_start(op: HessianOperator, start: torch.Tensor | None, seed: int,
                 dtype: np.dtype) -> np.ndarray:
    return _start_vector(op, start, seed).cpu().numpy().astype(dtype)


def _eigsh_extremes(op: HessianOperator, *, tol: float, maxiter: int,
                    start: torch.Tensor | None, seed: int) -> ExtremeEigen:
    linop = op.to_scipy()
    before = op.counter.count
    v0 = _numpy_start(op, start, seed, linop.dtype)
    try:
        values, vectors = eigsh(linop, k=2, which="BE", tol=tol, maxiter=maxiter, v0=v0)
        converged = True
    except ArpackNoConvergence as exc:
        values, vectors, converged = exc.eigenvalues, exc.eigenvectors, False
        if len(values) < 2:
            raise RuntimeError(f"ARPACK found {len(values)} of 2 eigenvalues in {maxiter} "
                               f"restarts; raise maxiter or tol") from exc
    order = np.argsort(values)[[-1, 0]]
    vecs = torch.from_numpy(np.ascontiguousarray(vectors[:, order])).to(op.device, op.dtype)
    return ExtremeEigen(float(values[order[0]]), float(values[order[1]]),
                        op.counter.count - before, vecs, converged, "eigsh")


def reference_extreme_eigenvalues(op: HessianOperator, *, tol: float = 1e-2,
                                  maxiter: int | None = None, start: torch.Tensor | None = None,
                                  seed: int = 0) -> ExtremeEigen:
    """The reference's method (hess_vec_prod.min_max_hessian_eigs), for comparison.

    1. ``eigsh(H, k=1, which="LM", tol=tol)``: the largest-MAGNITUDE eigenvalue, taken as
       "max".
    2. ``shift = 0.51 * max``; ``eigsh(H - shift I, k=1, which="LM", tol=tol)`` plus the shift,
       taken as "min" (right when the most negative eigenvalue is farther from the shift
       than lambda_max is, i.e. lambda_min < 0.02 * max or so).
    3. If ``max <= 0`` and ``min > 0``, the two are swapped.

    The reference's default tol is 1e-2 and it starts ARPACK from ARPACK's own random vector;
    here the start is seeded (or warm) so runs repeat. When H is positive definite with
    lambda_min > 0.02 lambda_max, step 2 can return lambda_max again: that is the reference's
    behaviour, kept.

    Args:
        op: the Hessian operator.
        tol: ARPACK's relative tolerance in both runs.
        maxiter: ARPACK restart cap per run (None: ARPACK's default, 10 n).
        start: ``(n, 2)`` warm start: column 0 for run 1, column 1 for run 2.
        seed: seed of the random start vectors when ``start`` is None.

    Returns:
        :class:`ExtremeEigen` with ``method="reference"``.
    """
    linop = op.to_scipy()
    before = op.counter.count
    columns = [None, None] if start is None else list(start.reshape(op.size, -1).T)[:2]
    converged = True

    def largest_magnitude(matrix: LinearOperator, column: torch.Tensor | None,
                          k: int) -> tuple[float, np.ndarray]:
        nonlocal converged
        v0 = _numpy_start(op, column, seed + k, linop.dtype)
        try:
            values, vectors = eigsh(matrix, k=1, which="LM", tol=tol, maxiter=maxiter, v0=v0)
        except ArpackNoConvergence as exc:
            if not len(exc.eigenvalues):
                raise RuntimeError("ARPACK did not converge; raise maxiter or tol") from exc
            values, vectors, converged = exc.eigenvalues, exc.eigenvectors, False
        return float(values[0]), vectors[:, 0]

    maxeig, vmax = largest_magnitude(linop, columns[0], 0)
    shift = REFERENCE_SHIFT * maxeig
    shifted = LinearOperator(linop.shape, dtype=linop.dtype,
                             matvec=lambda x: linop.matvec(x).reshape(-1) - shift * x.reshape(-1))
    mineig, vmin = largest_magnitude(shifted, columns[1], 1)
    mineig += shift
    if maxeig <= 0 and mineig > 0:
        maxeig, mineig, vmax, vmin = mineig, maxeig, vmin, vmax
    vectors = torch.from_numpy(np.stack([vmax, vmin], axis=1)).to(op.device, op.dtype)
    return ExtremeEigen(maxeig, mineig, op.counter.count - before, vectors, converged, "reference")


def top_eigenvalues(op: HessianOperator, *, k: int, tol: float = 1e-3, maxiter: int = 500,
                    seed: int = 0) -> TopEigen:
    """The ``k`` largest algebraic eigenvalues by Lanczos (full reorthogonalization).

    Stops when each of the top ``k`` Ritz residuals is at most ``tol * max |theta|``. Like
    every single-vector Krylov method, it finds one copy of an exactly repeated eigenvalue.

    Args:
        op: the Hessian operator.
        k: how many (1 <= k <= n).
        tol: relative tolerance, as in :func:`extreme_eigenvalues`.
        maxiter: cap on HVPs.
        seed: seed of the random start vector.

    Returns:
        :class:`TopEigen` with values in descending order.

    Raises:
        ValueError: k out of range, tol <= 0 or maxiter < 1.
    """
    _check_tol(tol, maxiter)
    if not 1 <= k <= op.size:
        raise ValueError(f"k must be between 1 and {op.size}, got {k}")

    rule = _Confirmed(lambda theta: np.arange(max(len(theta) - k, 0), len(theta)), tol)

    def done(theta: np.ndarray, residual: np.ndarray) -> bool:
        return len(theta) >= k and rule(theta, residual)

    before = op.counter.count
    krylov, _ = _lanczos(op, _start_vector(op, None, seed), maxiter=max(maxiter, k), done=done)
    theta, s, residual = krylov.ritz()
    top = np.arange(len(theta))[::-1][:k]
    converged = len(theta) >= k and (krylov.exhausted or rule.passes(theta, residual))
    return TopEigen(theta[top].copy(), krylov.vectors(s[:, top]), op.counter.count - before,
                    converged)
