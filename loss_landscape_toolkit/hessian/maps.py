"""Curvature maps: lambda_max and lambda_min of the Hessian at every grid point, and more at the
centre. The per-point work of plot_hessian_eigen.py; the numerics are in the rest of this package.

Eigenvalues are those of the Hessian of the MEAN loss over the evaluation data (operator.py).
The reference code's operator was the sum over batches of the batch-mean Hessians, so its
eigenvalues are ours times the number of batches; |lambda_min / lambda_max| is the same.
"""
from __future__ import annotations

import contextlib
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
from .operator import HessianOperator, cast_model_and_batches
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

    Each point starts Lanczos from the eigenvectors of this rank's previous point
    (``warm_start``), which is usually a neighbour; the model is put back at the centre after.
    """
    model.eval()
    op = operator(model, evalset, loss_name=loss_name, settings=settings)
    setter = PlaneSetter(model, directions, dir_type=dir_type)
    previous: list[torch.Tensor | None] = [None]

    def evaluate_point(index: int, needs: tuple[str, ...], poll: Poll) -> dict[str, float]:
        setter.set(point_coordinates(index, xcoordinates, ycoordinates))
        op.poll = poll
        result = extreme_eigenvalues(op, tol=settings.tol, maxiter=settings.maxiter,
                                             start=previous[0] if warm_start else None,
                                             method=settings.method)
        previous[0] = result.vectors
        return {"max_eig": result.lambda_max, "min_eig": result.lambda_min,
                "eig_hvps": float(result.hvps)}

    try:
        yield per_point(evaluate_point)
    finally:
        setter.restore()


def centre_extras(model: nn.Module, evalset: EvalSet, *, loss_name: str, settings: EigenSettings,
                  top_k: int = 0, trace_probes: int = 0, density_probes: int = 0,
                  density_steps: int = 80, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Top-k eigenvalues, Hutchinson trace and SLQ spectral density at the model's weights.

    Returns:
        ``(arrays, attrs)`` for :func:`h5io.write_surface_group`.
    """
    model.eval()
    op = operator(model, evalset, loss_name=loss_name, settings=settings)
    arrays: dict[str, np.ndarray] = {}
    attrs: dict[str, Any] = {"settings": asdict(settings), "parameters": op.size,
                             "normalization": "Hessian of the mean loss over the evaluation data"}
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
    lines = [f"Hessian at the centre ({attrs.get('parameters', '?')} parameters, {attrs.get('normalization')}):"]
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
