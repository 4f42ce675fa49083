"""Curvature maps: lambda_max and lambda_min of the Hessian at every grid point, and more at the
centre. The per-point work of plot_hessian_eigen.py; the numerics are in the rest of this package.

Eigenvalues are those of the Hessian of the MEAN loss over the evaluation data (operator.py).
The reference code's operator was the sum over batches of the batch-mean Hessians, so its
eigenvalues are ours times the number of batches; |lambda_min / lambda_max| is the same.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .. import h5io
from .._files import writer_lock
from ..directions import PlaneSetter
from ..parallel.grid import PointsFn, Poll, per_point
from ..parallel.scheduler import point_coordinates
from ..surface import EvalSet
from .eigen import extreme_eigenvalues, top_eigenvalues
from .operator import HessianOperator, NonFiniteHessian, cast_model_and_batches
from .spectrum import hutchinson_trace, spectral_density


@dataclass(frozen=True)
class EigenSettings:
    """What determines the eigenvalues of a map (recorded in the surface file; a resume must
    use the same)."""

    params: str = "dim>1"  # "dim>1" (the reference's choice) or "all"
    float64: bool = False
    tol: float = 1e-3
    maxiter: int = 200
    method: str = "lanczos"  # hessian.EIGEN_METHODS


def settings_conflict(recorded: dict[str, Any] | None, settings: EigenSettings) -> str | None:
    """What differs between the settings recorded in a file and ``settings`` (None if nothing)."""
    if not recorded:
        return None
    theirs = recorded
    diffs = [f"{k}={theirs[k]!r} (now {v!r})" for k, v in asdict(settings).items()
             if k in ("params", "float64", "method") and k in theirs and theirs[k] != v]
    return ", ".join(diffs) or None


def operator(model: nn.Module, evalset: EvalSet, *, loss_name: str,
             settings: EigenSettings) -> HessianOperator:
    """The Hessian operator of ``model`` (float64 first if asked: cast before anything holds
    the model's tensors)."""
    batches = evalset.batches
    if settings.float64:
        batches = cast_model_and_batches(model, batches, dtype=torch.float64)
    return HessianOperator(model, batches, num_classes=evalset.num_classes,
                                   loss_name=loss_name, params=settings.params)


@contextlib.contextmanager
def hessian_task(*, model: nn.Module, directions: Sequence[Sequence[Any]], dir_type: str,
                 xcoordinates: np.ndarray, ycoordinates: np.ndarray | None, evalset: EvalSet,
                 loss_name: str, settings: EigenSettings, warm_start: bool = True) -> Iterator[PointsFn]:
    """The per-point work of a curvature map: ``max_eig``, ``min_eig`` and the HVPs used.

    Each point starts Lanczos from the eigenvectors of this rank's previous finite point
    (``warm_start``), which is usually a neighbour; the model is put back at the centre after.
    Where the loss or a product is NaN or inf, both eigenvalues are NaN: stored like any
    result, so the point counts as done and a rerun does not compute it again.
    """
    model.eval()
    op = operator(model, evalset, loss_name=loss_name, settings=settings)
    setter = PlaneSetter(model, directions, dir_type=dir_type)
    previous: list[torch.Tensor | None] = [None]

    def evaluate_point(index: int, needs: tuple[str, ...], poll: Poll) -> dict[str, float]:
        setter.set(point_coordinates(index, xcoordinates, ycoordinates))
        op.poll = poll
        before = op.counter.count
        try:
            op.check_finite_loss()
            result = extreme_eigenvalues(op, tol=settings.tol, maxiter=settings.maxiter,
                                         start=previous[0] if warm_start else None,
                                         method=settings.method)
        except NonFiniteHessian:
            return {"max_eig": math.nan, "min_eig": math.nan, "eig_hvps": float(op.counter.count - before)}
        previous[0] = result.vectors
        return {"max_eig": result.lambda_max, "min_eig": result.lambda_min,
                "eig_hvps": float(result.hvps)}

    try:
        yield per_point(evaluate_point)
    finally:
        setter.restore()


def nonfinite_points(surface: h5io.SurfaceFile) -> int:
    """How many computed points of a curvature map hold NaN or inf eigenvalues."""
    if "max_eig" not in surface.arrays or "min_eig" not in surface.arrays:
        return 0
    finite = np.isfinite(surface.arrays["max_eig"]) & np.isfinite(surface.arrays["min_eig"])
    return int((surface.done_mask(h5io.EIG) & ~finite).sum())


def centre_extras(model: nn.Module, evalset: EvalSet, *, loss_name: str, settings: EigenSettings,
                  top_k: int = 0, trace_probes: int = 0, density_probes: int = 0,
                  density_steps: int = 80, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Top-k eigenvalues, Hutchinson trace and SLQ spectral density at the model's weights.

    Where the loss or a product is NaN or inf there, the top-k eigenvalues, trace samples and
    trace are NaN, no density is stored, and ``attrs["finite"]`` is False with the reason in
    ``attrs["nonfinite"]``.

    Returns:
        ``(arrays, attrs)`` for :func:`h5io.write_surface_group`.
    """
    model.eval()
    op = operator(model, evalset, loss_name=loss_name, settings=settings)
    attrs: dict[str, Any] = {"settings": asdict(settings), "parameters": op.size,
                             "normalization": "Hessian of the mean loss over the evaluation data"}
    try:
        op.check_finite_loss()
        arrays, found = _centre_estimates(op, settings=settings, top_k=top_k, trace_probes=trace_probes,
                                          density_probes=density_probes, density_steps=density_steps,
                                          seed=seed)
    except NonFiniteHessian as exc:
        arrays, found = {}, {"finite": False, "nonfinite": str(exc)}
        if top_k:
            arrays["top_eigenvalues"] = np.full(top_k, np.nan)
            found.update(top_k_hvps=0, top_k_converged=False)
        if trace_probes:
            arrays["trace_samples"] = np.full(trace_probes, np.nan)
            found.update(trace=math.nan, trace_stderr=math.nan, trace_hvps=0)
    attrs.update(found)
    return arrays, attrs


def _centre_estimates(op: HessianOperator, *, settings: EigenSettings, top_k: int, trace_probes: int,
                      density_probes: int, density_steps: int,
                      seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and attributes of :func:`centre_extras` where the Hessian is finite."""
    arrays: dict[str, np.ndarray] = {}
    attrs: dict[str, Any] = {"finite": True}
    if top_k:
        top = top_eigenvalues(op, k=top_k, tol=settings.tol, seed=seed)
        arrays["top_eigenvalues"] = top.values
        attrs.update(top_k_hvps=top.hvps, top_k_converged=top.converged)
    if trace_probes:
        trace = hutchinson_trace(op, probes=trace_probes, seed=seed)
        arrays["trace_samples"] = trace.samples
        attrs.update(trace=trace.trace, trace_stderr=trace.stderr, trace_hvps=trace.hvps)
    if density_probes:
        density = spectral_density(op, probes=density_probes, steps=density_steps, seed=seed)
        arrays["density_nodes"], arrays["density_weights"] = density.nodes, density.weights
        lo, hi = float(density.nodes.min()), float(density.nodes.max())
        pad = 0.05 * (hi - lo or 1.0)
        arrays["density_grid"] = np.linspace(lo - pad, hi + pad, 1000)
        arrays["density"] = density.density(arrays["density_grid"])  # smoothed, 1% of the spread
        attrs.update(density_probes=density.probes, density_steps=density.steps, density_hvps=density.hvps)
    return arrays, attrs


def write_centre_extras(surf_file: str, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
    """Store the centre results as the group ``hessian_centre`` of the surface file (under the
    writer lock: a plot_surface.py run may be writing the same file)."""
    with writer_lock(surf_file):
        h5io.write_surface_group(surf_file, h5io.HESSIAN_CENTRE, arrays, attrs)


def format_centre_extras(arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> str:
    """The centre results as the lines plot_hessian_eigen.py prints."""
    lines = [f"Hessian at the centre ({attrs.get('parameters', '?')} parameters, {attrs.get('normalization')}):"]
    if attrs.get("finite") is False:
        return "\n".join(lines + [f"  not finite ({attrs.get('nonfinite', 'NaN or inf')}): the top-k "
                                   f"eigenvalues and the trace are stored as NaN, no spectral density"])
    if "top_eigenvalues" in arrays:
        values = ", ".join(f"{v:.5g}" for v in arrays["top_eigenvalues"])
        lines.append(f"  top {len(arrays['top_eigenvalues'])} eigenvalues: {values} ({attrs['top_k_hvps']} HVPs)")
    if "trace" in attrs:
        lines.append(f"  trace (Hutchinson, {len(arrays['trace_samples'])} probes): "
                     f"{attrs['trace']:.5g} +- {attrs['trace_stderr']:.2g} (standard error)")
    if "density_nodes" in arrays:
        nodes = arrays["density_nodes"]
        lines.append(f"  spectral density (SLQ, {attrs['density_probes']} probes x {attrs['density_steps']} "
                     f"steps): support [{nodes.min():.4g}, {nodes.max():.4g}]")
    return "\n".join(lines)
