"""The Hessian of the mean evaluation loss, one import for all of it: products, eigenvalues, trace, density.

Everything here is about one matrix, the Hessian of the MEAN loss over the evaluation data with
respect to the chosen parameters::

    H = d^2/dtheta^2  (1/N) sum_{i=1..N} loss(f(x_i; theta), y_i)

with the per-sample loss of :func:`evaluation.loss_sum` (crossentropy or mse), so the Hessian
belongs to exactly the loss the surface files map. The reference code (hess_vec_prod.py) sums
the Hessians of the per-batch MEAN losses instead; with B equal-sized batches its operator is
``B * H`` (about 391 x H for CIFAR-10 at batch size 128), so its eigenvalues are ours times B,
and every ratio such as |lambda_min / lambda_max| is the same.

Pieces, from the bottom up, and where they live (this module re-exports them all):

- ``operator.py``: :class:`HessianOperator`, Hessian-vector products (HVPs) on torch vectors, on
  the model's device, reading the model's current weights at every call (move the model with
  ``directions.PlaneSetter`` and keep using the same operator); :meth:`HessianOperator.to_scipy`,
  the one adapter to scipy (:class:`HessianLinearOperator`); :func:`hessian_parameters`,
  :func:`cast_model_and_batches` and :class:`HVPCounter`; :class:`NonFiniteHessian`, raised
  where the loss or a product is NaN or inf.
- ``eigen.py``: :func:`extreme_eigenvalues`, lambda_max and lambda_min, the largest and smallest
  ALGEBRAIC eigenvalues, by our Lanczos on the device (default), ARPACK's both-ends mode, or the
  reference's method (:func:`reference_extreme_eigenvalues`); :func:`top_eigenvalues`. Its
  stopping rule reads ``LOOKAHEAD_MIN`` and ``LOOKAHEAD_FRACTION`` from ``eigen.py``: set them
  there (the names re-exported here are copies).
- ``spectrum.py``: :func:`hutchinson_trace` (trace with its standard error) and
  :func:`spectral_density` (density by stochastic Lanczos quadrature).
- ``maps.py``, imported on its own (``from loss_landscape_toolkit.hessian import maps``): the
  curvature maps over a grid, the per-point work of plot_hessian_eigen.py.

Every HVP is one pass over all the cached data (forward, backward and a second-order pass per
batch), so the cost of everything here is counted in HVPs: each result says how many it used,
and :class:`HVPCounter` counts them all.
"""
from __future__ import annotations

from .._options import EIGEN_METHODS, PARAM_SETS
from .eigen import (
    LOOKAHEAD_FRACTION,
    LOOKAHEAD_MIN,
    REFERENCE_SHIFT,
    ExtremeEigen,
    TopEigen,
    extreme_eigenvalues,
    reference_extreme_eigenvalues,
    top_eigenvalues,
)
from .operator import (
    HVP_MODES,
    HessianLinearOperator,
    HessianOperator,
    HVPCounter,
    NonFiniteHessian,
    Poll,
    cast_model_and_batches,
    hessian_parameters,
)
from .spectrum import SpectralDensity, TraceEstimate, hutchinson_trace, spectral_density

__all__ = [
    "EIGEN_METHODS",
    "HVP_MODES",
    "LOOKAHEAD_FRACTION",
    "LOOKAHEAD_MIN",
    "PARAM_SETS",
    "REFERENCE_SHIFT",
    "ExtremeEigen",
    "HVPCounter",
    "HessianLinearOperator",
    "HessianOperator",
    "NonFiniteHessian",
    "Poll",
    "SpectralDensity",
    "TopEigen",
    "TraceEstimate",
    "cast_model_and_batches",
    "extreme_eigenvalues",
    "hessian_parameters",
    "hutchinson_trace",
    "reference_extreme_eigenvalues",
    "spectral_density",
    "top_eigenvalues",
]
