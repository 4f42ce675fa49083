"""Hessian-vector products of the mean loss over cached batches, and the one adapter to scipy.

The matrix is the Hessian of the MEAN loss over all evaluation samples with respect to the chosen
parameters (the package docstring says more). Here:

- :class:`HVPCounter`: counts HVPs, the unit of cost of everything in this package.
- :class:`NonFiniteHessian`: raised where the loss or a product is NaN or inf.
- :func:`hessian_parameters`: the parameters the Hessian is taken over (``PARAM_SETS``).
- :func:`cast_model_and_batches`: the model and the inputs in one dtype (for float64 Hessians).
- :class:`HessianOperator`: the products on torch vectors, computed in one of ``HVP_MODES``.
- :class:`HessianLinearOperator`: the operator as a scipy ``LinearOperator``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import nn

from .._options import PARAM_SETS
from ..errors import ModelError, one_line
from ..evaluation import Batches, map_inputs
from ..objective import Inputs, Loss, call_model, get_loss, logits_of

HVP_MODES = ("auto", "reverse_over_forward", "double_backward", "forward_over_reverse")

Poll = Callable[[], None]


# --------------------------------------------------------------------------- counting
@dataclass
class HVPCounter:
    """Number of Hessian-vector products computed so far (each one is a pass over all data)."""

    count: int = 0

    def add(self, n: int = 1) -> None:
        self.count += n


class NonFiniteHessian(ArithmeticError):
    """The loss or a Hessian-vector product is NaN or inf at the model's current weights: there
    is no Hessian to take eigenvalues of there (a diverged region of a landscape, say)."""


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
    ``directions.PlaneSetter`` or anything else holding the model's tensors: ``model.to``
    replaces the tensors behind the parameters. Labels are left as they are.

    Returns:
        New ``(inputs, labels)`` pairs on the same device.
    """
    model.to(dtype)
    return [(map_inputs(lambda t: t.to(dtype) if t.is_floating_point() else t, x), y) for x, y in batches]


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
        num_classes: number of classes (used by the reference's mse, ``softmax_mse``).
        loss_name: a loss of :mod:`objective`: a built-in name, a user loss spec or a
            :class:`objective.Loss`; the mean is over all items it counts (e.g. every
            non-ignored token), as for the surfaces.
        params: ``"dim>1"`` (default, like the reference) or ``"all"``.
        mode: how an HVP is computed: ``"reverse_over_forward"`` (``torch.func.grad`` of a
            ``torch.func.jvp``: the fastest, measured by ``bench/bench_hessian.py`` on
            ResNet-20), ``"double_backward"`` (reverse-over-reverse with autograd; works for
            any model with double-backward support) or ``"forward_over_reverse"``
            (``torch.func.jvp`` of ``torch.func.grad``). All give the same products up to
            rounding. ``"auto"`` (default) uses reverse_over_forward and switches to
            double_backward for good if the FIRST product fails with a NotImplementedError or
            RuntimeError (e.g. a custom ``autograd.Function`` or a fused attention kernel
            without forward-mode or ``torch.func`` support), or if it differs from the
            double_backward product of the same vector (checked once, on the first product:
            torch 2.x's forward-mode AD of ``layer_norm`` gives wrong second derivatives
            through reverse_over_forward, off by 50-75% on a transformer); ``op.mode`` then
            says which one is used and ``op.fallback_reason`` why.
        counter: counts the products; a fresh one by default. Read ``op.counter.count``.
        poll: called between batches (MPI ranks use it to answer requests while computing);
            may be replaced later through the ``poll`` attribute.

    Raises:
        ValueError: a model in training mode, no batches, an unknown option, or inputs whose
            dtype differs from the parameters'.
    """

    def __init__(self, model: nn.Module, batches: Batches, *, num_classes: int = 0,
                 loss_name: str | Loss = "crossentropy", params: str = "dim>1",
                 mode: str = "auto", counter: HVPCounter | None = None,
                 poll: Poll | None = None):
        if model.training:
            raise ValueError("the Hessian needs the model in eval mode (call model.eval()): in "
                             "training mode BatchNorm uses batch statistics and dropout is random")
        if mode not in HVP_MODES:
            raise ValueError(f"mode must be one of {HVP_MODES}, got {mode!r}")
        if not batches:
            raise ValueError("no batches: the Hessian needs evaluation data")
        named = hessian_parameters(model, params)
        self.model = model
        self.batches = list(batches)
        self.num_classes = num_classes
        self.objective = get_loss(loss_name)
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
        for x, _ in self.batches:
            for t in (x.values() if isinstance(x, Mapping) else [x]):
                if t.is_floating_point() and t.dtype != self.dtype:
                    raise ValueError(f"inputs are {t.dtype} but the parameters are {self.dtype}; "
                                     f"use hessian.cast_model_and_batches to put both in one dtype")
        self.num_items = self._count_items()

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

    def _count_items(self) -> int:
        """N of the mean: the items the loss counts over all batches (one forward pass)."""
        with torch.no_grad():
            counts = [self.objective.sums(logits_of(call_model(self.model, x)), y, num_classes=self.num_classes).count
                      for x, y in self.batches]
        total = int(sum(int(c) for c in counts))
        if total < 1:
            raise ValueError("the loss counts no items in these batches (every target ignored?)")
        return total

    def _batch_loss(self, outputs: object, targets: torch.Tensor) -> torch.Tensor:
        # 1/N per item (N = all items counted), so the batches add up to the mean loss
        summed = self.objective.sums(logits_of(outputs), targets, num_classes=self.num_classes).loss
        return summed.to(self.dtype) / self.num_items

    def _after_batch(self) -> None:
        if self.poll is not None:
            self.poll()

    # ------------------------------------------------------------------ products
    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H @ v`` for a flat vector ``v`` of shape ``(size,)``; counts one HVP.

        Returns:
            A new ``(size,)`` tensor on the operator's device, in its dtype.

        Raises:
            NonFiniteHessian: the product has a NaN or inf entry (counted all the same).
        """
        v = self._as_vector(v)
        try:
            out = self._product(v)
        except (NotImplementedError, RuntimeError) as exc:
            if not self._may_fall_back:
                raise
            first = f"{type(exc).__name__}: {exc}"
            self.mode, self.fallback_reason, self._may_fall_back = "double_backward", first, False
            try:
                out = self._product(v)
            except (NotImplementedError, RuntimeError) as again:
                raise ModelError(
                    f"the model has no second derivatives to take a Hessian of: {one_line(exc, 150)}; with "
                    f"double backward, {one_line(again, 150)}. A fused kernel without them (e.g. "
                    f"scaled_dot_product_attention on CPU) can run as its math version inside "
                    f"torch.nn.attention.sdpa_kernel(SDPBackend.MATH)") from again
        if self._may_fall_back:
            out = self._checked_against_double_backward(v, out)
        self._may_fall_back = False
        self.counter.add()
        if not bool(torch.isfinite(out).all()):
            raise NonFiniteHessian("a Hessian-vector product is NaN or inf at these weights")
        return out

    def _checked_against_double_backward(self, v: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The first product of the auto mode, compared once with double_backward's: where they
        differ by more than rounding, double_backward is used from now on (and its product
        returned)."""
        fast_mode, self.mode = self.mode, "double_backward"
        reference = self._product(v)
        scale = float(reference.norm())
        error = float((out - reference).norm()) / scale if scale > 0 else float((out - reference).norm())
        if error <= (1e-8 if self.dtype == torch.float64 else 1e-3):
            self.mode = fast_mode
            return out
        self.fallback_reason = (f"{fast_mode} products differ from double_backward's by {error:.2g} "
                                f"(relative): an operation of this model has wrong forward-mode "
                                f"derivatives in torch {torch.__version__} (layer_norm does)")
        return reference

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
                loss = self._batch_loss(call_model(self.model, inputs), targets)
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
                        lambda p, loss=loss: torch.func.jvp(loss, (p,), (tangents,))[1])(primals)
                torch._foreach_add_(out_parts, products)
                self._after_batch()

    def _functional_loss(self, inputs: Inputs,
                         targets: torch.Tensor) -> Callable[[tuple[torch.Tensor, ...]], torch.Tensor]:
        args, kwargs = ((), dict(inputs)) if isinstance(inputs, Mapping) else ((inputs,), {})

        def loss(chosen: tuple[torch.Tensor, ...]) -> torch.Tensor:
            outputs = torch.func.functional_call(self.model, dict(zip(self.names, chosen)),
                                                 args, kwargs, strict=False)
            return self._batch_loss(outputs, targets)
        return loss

    def loss(self) -> float:
        """The mean loss over all batches at the current weights (one forward pass, no HVP)."""
        total = torch.zeros((), dtype=self.dtype, device=self.device)
        with torch.no_grad():
            for inputs, targets in self.batches:
                total += self._batch_loss(call_model(self.model, inputs), targets)
                self._after_batch()
        return float(total)

    def check_finite_loss(self) -> float:
        """The mean loss at the current weights; raises :class:`NonFiniteHessian` if it is NaN or inf.

        A product alone can miss a non-finite loss: where the network replaces its output by a
        constant NaN, no derivative reaches the weights and the products are zero.
        """
        value = self.loss()
        if not math.isfinite(value):
            raise NonFiniteHessian(f"the loss is {value} at these weights")
        return value

    def gradient(self) -> torch.Tensor:
        """The gradient of the mean loss w.r.t. the chosen parameters, flat ``(size,)``.

        Not counted as an HVP; the benchmark compares an HVP's time with this.
        """
        out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        out_parts = self.unflatten(out)
        with torch.enable_grad():
            for inputs, targets in self.batches:
                loss = self._batch_loss(call_model(self.model, inputs), targets)
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
