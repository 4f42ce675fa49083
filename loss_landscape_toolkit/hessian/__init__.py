"""The Hessian of the loss over cached evaluation data: products, extreme eigenvalues, top-k,
trace and spectral density.

Everything here is about one matrix, the Hessian of the MEAN loss over the evaluation data with
respect to the chosen parameters::

    H = d^2/dtheta^2  (1/N) sum_{i=1..N} loss(f(x_i; theta), y_i)

with the per-sample loss of :func:`evaluation.loss_sum` (crossentropy or mse), so the Hessian
belongs to exactly the loss the surface files map. The reference code (hess_vec_prod.py) sums
the Hessians of the per-batch MEAN losses instead; with B equal-sized batches its operator is
``B * H`` (about 391 x H for CIFAR-10 at batch size 128), so its eigenvalues are ours times B,
and every ratio such as |lambda_min / lambda_max| is the same.

Pieces, from the bottom up:

- :class:`HessianOperator`: Hessian-vector products (HVPs) on torch vectors, on the model's
  device, reading the model's current weights at every call (move the model with
  ``net_plotter.PlaneSetter`` and keep using the same operator).
- :meth:`HessianOperator.to_scipy`: the one adapter to scipy, a ``LinearOperator``.
- :func:`extreme_eigenvalues`: lambda_max and lambda_min, the largest and smallest ALGEBRAIC
  eigenvalues, by our Lanczos on the device (default), ARPACK's both-ends mode, or the
  reference's method (:func:`reference_extreme_eigenvalues`).
- :func:`top_eigenvalues`, :func:`hutchinson_trace`, :func:`spectral_density`: the centre-point
  extras (top-k eigenvalues, trace with its standard error, density by stochastic Lanczos
  quadrature).

Every HVP is one pass over all the cached data (forward, backward and a second-order pass per
batch), so the cost of everything here is counted in HVPs: each result says how many it used,
and :class:`HVPCounter` counts them all.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from torch import nn

from ..evaluation import LOSSES, Batches, loss_sum

PARAM_SETS = ("dim>1", "all")
HVP_MODES = ("auto", "reverse_over_forward", "double_backward", "forward_over_reverse")
EIGEN_METHODS = ("lanczos", "eigsh", "reference")
REFERENCE_SHIFT = 0.51  # the reference shifts by 0.51 * lambda_max to reach the other end
LOOKAHEAD_MIN = 3  # Lanczos confirms convergence after this many more HVPs ...
LOOKAHEAD_FRACTION = 0.25  # ... or this fraction of the HVPs so far, whichever is larger

Poll = Callable[[], None]


# --------------------------------------------------------------------------- counting
@dataclass
class HVPCounter:
    """Number of Hessian-vector products computed so far (each one is a pass over all data)."""

    count: int = 0

    def add(self, n: int = 1) -> None:
        self.count += n


# --------------------------------------------------------------------------- parameters
def hessian_parameters(model: nn.Module, params: str = "dim>1") -> list[tuple[str, nn.Parameter]]:
    """The parameters the Hessian is taken over, in ``model.named_parameters()`` order.

    Args:
        model: the network.
        params: ``"dim>1"`` (conv and linear weights; biases and BatchNorm parameters excluded,
            like the reference) or ``"all"``.

    Returns:
        ``(name, parameter)`` pairs.

    Raises:
        ValueError: unknown ``params``, no parameter selected, or a selected parameter that
            does not require gradients.
    """
    if params not in PARAM_SETS:
        raise ValueError(f"params must be one of {PARAM_SETS}, got {params!r}")
    chosen = [(n, p) for n, p in model.named_parameters() if params == "all" or p.dim() > 1]
    if not chosen:
        raise ValueError(f"the model has no parameters matching params={params!r}")
    frozen = [n for n, p in chosen if not p.requires_grad]
    if frozen:
        raise ValueError(f"parameter {frozen[0]} has requires_grad=False; the Hessian needs "
                         f"gradients of every chosen parameter (unfreeze it)")
    dtypes = {p.dtype for _, p in chosen}
    if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
        raise ValueError(f"the chosen parameters must share one floating dtype, "
                         f"got {sorted(map(str, dtypes))}")
    return chosen


def cast_model_and_batches(model: nn.Module, batches: Batches, *,
                           dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Put the model (in place) and the inputs of ``batches`` (copies) in ``dtype``.

    This is how to get float64 Hessians: ``batches = cast_model_and_batches(model, batches,
    dtype=torch.float64)``, then build the :class:`HessianOperator`. Cast BEFORE creating a
    ``net_plotter.PlaneSetter`` or anything else holding the model's tensors: ``model.to``
    replaces the tensors behind the parameters. Labels are left as they are.

    Returns:
        New ``(inputs, labels)`` pairs on the same device.
    """
    model.to(dtype)
    return [(x.to(dtype) if x.is_floating_point() else x, y) for x, y in batches]


# --------------------------------------------------------------------------- the operator
class HessianOperator:
    """Hessian-vector products of the mean loss over cached batches, on torch vectors.

    The matrix is ``H = d^2/dtheta^2 (1/N) sum_i loss_i`` over all N samples of ``batches``
    (NOT the reference's sum over batches of batch-mean Hessians, which is ``B * H`` for B
    equal batches; ratios of eigenvalues are the same). ``theta`` is the flat concatenation
    of the chosen parameters (:func:`hessian_parameters`) in ``model.named_parameters()``
    order. Every product reads the model's CURRENT weights, so one operator serves a whole
    grid: move the model in place, call again.

    Precision: the operator works in the dtype of the chosen parameters. Float32 by default;
    for float64, put the model and the inputs in float64 first
    (:func:`cast_model_and_batches`). Inputs of another floating dtype are refused.

    Args:
        model: the network, in eval mode (BatchNorm uses its running statistics, dropout is
            off), which makes the loss a deterministic function of the weights.
        batches: ``(inputs, labels)`` pairs already on the model's device, e.g. from
            ``evaluation.make_batches``.
        num_classes: number of classes (used by the mse loss).
        loss_name: ``"crossentropy"`` or ``"mse"``, as in :func:`evaluation.loss_sum`.
        params: ``"dim>1"`` (default, like the reference) or ``"all"``.
        mode: how an HVP is computed: ``"reverse_over_forward"`` (``torch.func.grad`` of a
            ``torch.func.jvp``: the fastest, measured by ``bench/bench_hessian.py`` on
            ResNet-20), ``"double_backward"`` (reverse-over-reverse with autograd; works for
            any model with double-backward support) or ``"forward_over_reverse"``
            (``torch.func.jvp`` of ``torch.func.grad``). All give the same products up to
            rounding. ``"auto"`` (default) uses reverse_over_forward and switches to
            double_backward for good if the FIRST product fails with a NotImplementedError or
            RuntimeError (e.g. a custom ``autograd.Function`` without forward-mode or
            ``torch.func`` support); ``op.mode`` then says which one is used and
            ``op.fallback_reason`` why.
        counter: counts the products; a fresh one by default. Read ``op.counter.count``.
        poll: called between batches (MPI ranks use it to answer requests while computing);
            may be replaced later through the ``poll`` attribute.

    Raises:
        ValueError: a model in training mode, no batches, an unknown option, or inputs whose
            dtype differs from the parameters'.
    """

    def __init__(self, model: nn.Module, batches: Batches, *, num_classes: int,
                 loss_name: str = "crossentropy", params: str = "dim>1",
                 mode: str = "auto", counter: HVPCounter | None = None,
                 poll: Poll | None = None):
        if model.training:
            raise ValueError("the Hessian needs the model in eval mode (call model.eval()): in "
                             "training mode BatchNorm uses batch statistics and dropout is random")
        if mode not in HVP_MODES:
            raise ValueError(f"mode must be one of {HVP_MODES}, got {mode!r}")
        if not batches:
            raise ValueError("no batches: the Hessian needs evaluation data")
        if loss_name not in LOSSES:
            raise ValueError(f"loss_name must be one of {LOSSES}, got {loss_name!r}")
        named = hessian_parameters(model, params)
        self.model = model
        self.batches = list(batches)
        self.num_classes = num_classes
        self.loss_name = loss_name
        self.params = params
        self.mode = "reverse_over_forward" if mode == "auto" else mode
        self._may_fall_back = mode == "auto"
        self.fallback_reason = ""
        self.counter = counter if counter is not None else HVPCounter()
        self.poll = poll
        self.names = [n for n, _ in named]
        self._parameters = [p for _, p in named]
        self.shapes = [tuple(p.shape) for p in self._parameters]
        self._sizes = [p.numel() for p in self._parameters]
        self.size = sum(self._sizes)
        self.dtype = self._parameters[0].dtype
        self.device = self._parameters[0].device
        self.num_samples = sum(len(y) for _, y in self.batches)
        for x, _ in self.batches:
            if x.is_floating_point() and x.dtype != self.dtype:
                raise ValueError(f"inputs are {x.dtype} but the parameters are {self.dtype}; "
                                 f"use hessian.cast_model_and_batches to put both in one dtype")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    # ------------------------------------------------------------------ vectors
    def unflatten(self, vector: torch.Tensor) -> list[torch.Tensor]:
        """Views of a flat ``(size,)`` vector shaped like the chosen parameters."""
        return [part.view(shape) for part, shape in zip(vector.split(self._sizes), self.shapes)]

    def flatten(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """One flat ``(size,)`` vector from tensors shaped like the chosen parameters."""
        return torch.cat([t.reshape(-1) for t in tensors])

    def _as_vector(self, v: torch.Tensor) -> torch.Tensor:
        if v.shape != (self.size,):
            raise ValueError(f"expected a vector of shape ({self.size},), got {tuple(v.shape)}")
        return v.to(device=self.device, dtype=self.dtype)

    def _batch_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # 1/N per sample (N = all samples), so the batches add up to the mean loss
        return loss_sum(outputs, targets, loss_name=self.loss_name,
                        num_classes=self.num_classes) / self.num_samples

    def _after_batch(self) -> None:
        if self.poll is not None:
            self.poll()

    # ------------------------------------------------------------------ products
    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H @ v`` for a flat vector ``v`` of shape ``(size,)``; counts one HVP.

        Returns:
            A new ``(size,)`` tensor on the operator's device, in its dtype.
        """
        v = self._as_vector(v)
        try:
            out = self._product(v)
        except (NotImplementedError, RuntimeError) as exc:
            if not self._may_fall_back:
                raise
            self.mode, self.fallback_reason = "double_backward", f"{type(exc).__name__}: {exc}"
            self._may_fall_back = False
            out = self._product(v)
        self._may_fall_back = False
        self.counter.add()
        return out

    def _product(self, v: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        out_parts, v_parts = self.unflatten(out), self.unflatten(v)
        if self.mode == "double_backward":
            self._double_backward(v_parts, out_parts)
        else:
            self._functional(v_parts, out_parts)
        return out

    __matmul__ = matvec

    def _double_backward(self, v_parts: list[torch.Tensor], out_parts: list[torch.Tensor]) -> None:
        with torch.enable_grad():
            for inputs, targets in self.batches:
                loss = self._batch_loss(self.model(inputs), targets)
                grads = torch.autograd.grad(loss, self._parameters, create_graph=True)
                products = torch.autograd.grad(grads, self._parameters, grad_outputs=v_parts)
                torch._foreach_add_(out_parts, products)
                self._after_batch()

    def _functional(self, v_parts: list[torch.Tensor], out_parts: list[torch.Tensor]) -> None:
        primals = tuple(p.detach() for p in self._parameters)
        tangents = tuple(v_parts)
        # torch.func differentiates only what it is given; no_grad keeps the outer autograd
        # from also recording a graph through the other parameters.
        with torch.no_grad(), warnings.catch_warnings():
            # forward-mode AD loads torch's jvp decompositions through torch.jit.script, which
            # warns about its own deprecation once; nothing for us to fix
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated",
                                    category=FutureWarning)
            for inputs, targets in self.batches:
                loss = self._functional_loss(inputs, targets)
                if self.mode == "forward_over_reverse":
                    _, products = torch.func.jvp(torch.func.grad(loss), (primals,), (tangents,))
                else:
                    products = torch.func.grad(
                        lambda p: torch.func.jvp(loss, (p,), (tangents,))[1])(primals)
                torch._foreach_add_(out_parts, products)
                self._after_batch()

    def _functional_loss(self, inputs: torch.Tensor,
                         targets: torch.Tensor) -> Callable[[tuple[torch.Tensor, ...]], torch.Tensor]:
        def loss(chosen: tuple[torch.Tensor, ...]) -> torch.Tensor:
            outputs = torch.func.functional_call(self.model, dict(zip(self.names, chosen)),
                                                 (inputs,), strict=False)
            return self._batch_loss(outputs, targets)
        return loss

    def gradient(self) -> torch.Tensor:
        """The gradient of the mean loss w.r.t. the chosen parameters, flat ``(size,)``.

        Not counted as an HVP; the benchmark compares an HVP's time with this.
        """
        out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        out_parts = self.unflatten(out)
        with torch.enable_grad():
            for inputs, targets in self.batches:
                loss = self._batch_loss(self.model(inputs), targets)
                torch._foreach_add_(out_parts, torch.autograd.grad(loss, self._parameters))
                self._after_batch()
        return out

    def to_scipy(self, *, dtype: np.dtype | type | None = None) -> HessianLinearOperator:
        """This operator as a ``scipy.sparse.linalg.LinearOperator`` (see
        :class:`HessianLinearOperator`), sharing this operator's counter."""
        return HessianLinearOperator(self, dtype=dtype)


class HessianLinearOperator(LinearOperator):
    """The one adapter between torch and scipy: ``H`` of a :class:`HessianOperator` as a
    ``scipy.sparse.linalg.LinearOperator``.

    ``H`` is the Hessian of the MEAN loss over all evaluation samples (1/N sum over samples,
    not the reference's sum of per-batch mean Hessians) w.r.t. the flat chosen parameters.
    Shape ``(n, n)`` with n = number of chosen parameter entries; symmetric, so ``rmatvec``
    is ``matvec``. Each ``matvec`` (and each column of a ``matmat``) moves the numpy vector to
    the device, computes one HVP and brings the result back; ``counter.count`` counts them
    (the counter is the torch operator's, so HVPs made either way add up).

    Args:
        operator: the torch operator.
        dtype: numpy dtype seen by scipy; by default the operator's own (float32 or float64).
            A wider dtype than the operator's is allowed: vectors are rounded on the way in.
    """

    def __init__(self, operator: HessianOperator, *, dtype: np.dtype | type | None = None):
        own = np.float64 if operator.dtype == torch.float64 else np.float32
        super().__init__(dtype=np.dtype(dtype if dtype is not None else own), shape=operator.shape)
        self.operator = operator

    @property
    def counter(self) -> HVPCounter:
        return self.operator.counter

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        v = torch.from_numpy(np.ascontiguousarray(x, dtype=self.dtype).reshape(-1))
        return self.operator.matvec(v).cpu().numpy().astype(self.dtype, copy=False)

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._matvec(x)

    def _adjoint(self) -> HessianLinearOperator:
        return self


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
