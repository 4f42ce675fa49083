"""Estimates over the whole spectrum of the Hessian: Hutchinson's trace and the spectral density.

Both draw Rademacher probes on the CPU from a seed, so the estimates are the same on any device;
the density is stochastic Lanczos quadrature over the Lanczos runs of eigen.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .eigen import _lanczos
from .operator import HessianOperator


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson's estimate of trace(H): the mean of ``samples`` (z^T H z for Rademacher z),
    its standard error ``std(samples, ddof=1) / sqrt(probes)``, and the HVPs used."""

    trace: float
    stderr: float
    samples: np.ndarray
    hvps: int


@dataclass(frozen=True)
class SpectralDensity:
    """Spectral density of H by stochastic Lanczos quadrature.

    The density is ``phi(t) = sum_j weights[j] * delta(t - nodes[j])``, an estimate of
    ``(1/n) sum_i delta(t - lambda_i)``: each probe contributes the Gauss quadrature of its
    Lanczos run (nodes = Ritz values, weights = squared first components of T's eigenvectors),
    divided by the number of probes, so the weights sum to 1 and ``sum w * node^k`` estimates
    ``trace(H^k) / n`` (exactly so for each probe's own ``z^T H^k z / z^T z`` when
    ``k < 2 * steps``).

    Attributes:
        nodes, weights: flat arrays of the same length (probes x steps at most).
        probes, steps: how the estimate was made.
        hvps: HVPs used.
    """

    nodes: np.ndarray
    weights: np.ndarray
    probes: int
    steps: int
    hvps: int

    def moment(self, k: int) -> float:
        """``sum_j w_j node_j^k``, the estimate of ``trace(H^k) / n``."""
        return float(np.sum(self.weights * self.nodes ** k))

    def default_sigma(self) -> float:
        """Kernel width used when none is given: 1% of the spread of the nodes."""
        spread = float(self.nodes.max() - self.nodes.min()) if self.nodes.size else 0.0
        return 0.01 * spread if spread > 0 else 1.0

    def density(self, grid: np.ndarray, *, sigma: float | None = None) -> np.ndarray:
        """The density smoothed by a Gaussian kernel of width ``sigma``, on ``grid``.

        Args:
            grid: points where to evaluate it, shape ``(m,)``.
            sigma: kernel standard deviation; :meth:`default_sigma` by default.

        Returns:
            ``(m,)`` values; they integrate to 1 over a grid covering all nodes with margin.
        """
        sigma = self.default_sigma() if sigma is None else float(sigma)
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        grid = np.asarray(grid, dtype=np.float64)
        z = (grid[:, None] - self.nodes[None, :]) / sigma  # (m, K)
        return np.exp(-0.5 * z ** 2) @ self.weights / (sigma * math.sqrt(2 * math.pi))


# --------------------------------------------------------------------------- estimates
def _rademacher(op: HessianOperator, generator: torch.Generator) -> torch.Tensor:
    signs = torch.randint(0, 2, (op.size,), generator=generator, dtype=torch.int8)
    return (2 * signs - 1).to(device=op.device, dtype=op.dtype)


def hutchinson_trace(op: HessianOperator, *, probes: int, seed: int = 0) -> TraceEstimate:
    """Hutchinson's estimate of trace(H): mean of ``z^T H z`` over Rademacher probes z.

    Unbiased; its variance is ``2 * (||H||_F^2 - sum_i H_ii^2)`` per probe, so the standard
    error (returned) shrinks like ``1 / sqrt(probes)``. Probes are drawn on the CPU from
    ``seed``, so the estimate is the same on any device.

    Args:
        op: the Hessian operator.
        probes: number of probes (>= 2 for a standard error); one HVP each.
        seed: seed of the probes.

    Raises:
        ValueError: probes < 2.
    """
    if probes < 2:
        raise ValueError(f"probes must be >= 2 (a standard error needs two), got {probes}")
    g = torch.Generator().manual_seed(seed)
    before = op.counter.count
    samples = np.empty(probes)
    for i in range(probes):
        z = _rademacher(op, g)
        samples[i] = float(torch.dot(z, op.matvec(z)))
    return TraceEstimate(float(samples.mean()), float(samples.std(ddof=1) / math.sqrt(probes)),
                         samples, op.counter.count - before)


def spectral_density(op: HessianOperator, *, probes: int, steps: int, seed: int = 0) -> SpectralDensity:
    """Spectral density of H by stochastic Lanczos quadrature (as PyHessian's ``density``).

    For each Rademacher probe z, ``steps`` Lanczos steps from ``z / ||z||`` (full
    reorthogonalization) give T; its eigenvalues are the nodes and the squared first
    components of its eigenvectors the weights of a Gauss quadrature for
    ``z^T f(H) z / z^T z``. Averaging over probes estimates ``(1/n) trace f(H)``, i.e. the
    density of eigenvalues. A run stops early if the Krylov space is exhausted (tiny nets).

    Args:
        op: the Hessian operator.
        probes: number of probes (>= 1).
        steps: Lanczos steps per probe (>= 1; one HVP each).
        seed: seed of the probes.

    Returns:
        :class:`SpectralDensity` (weights summing to 1).

    Raises:
        ValueError: probes or steps < 1.
    """
    if probes < 1 or steps < 1:
        raise ValueError(f"probes and steps must be >= 1, got probes={probes}, steps={steps}")
    g = torch.Generator().manual_seed(seed)
    before = op.counter.count
    nodes, weights = [], []
    for _ in range(probes):
        krylov, _ = _lanczos(op, _rademacher(op, g), maxiter=steps, done=None)
        theta, s, _ = krylov.ritz()
        nodes.append(theta)
        weights.append(s[0, :] ** 2 / probes)
    return SpectralDensity(np.concatenate(nodes), np.concatenate(weights), probes, steps,
                           op.counter.count - before)
