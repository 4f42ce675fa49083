"""loss_landscape_toolkit.hessian against an independent dense reference, in float64 on tiny nets.

The reference is ``torch.func.hessian`` of the mean loss written directly with
``F.cross_entropy`` / ``F.mse_loss`` over all samples at once, as a function of the flat chosen
parameters, and ``torch.linalg.eigh`` of that matrix.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import nn

from loss_landscape_toolkit.evaluation import make_batches
from loss_landscape_toolkit.hessian import (
    EIGEN_METHODS,
    HVP_MODES,
    PARAM_SETS,
    HessianOperator,
    NonFiniteHessian,
    cast_model_and_batches,
    eigen,
    extreme_eigenvalues,
    hutchinson_trace,
    maps,
    reference_extreme_eigenvalues,
    spectral_density,
    top_eigenvalues,
)
from loss_landscape_toolkit.objective import LossError
from loss_landscape_toolkit.surface import EvalSet


# --------------------------------------------------------------------------- tiny cases
class TinyMLP(nn.Module):
    """4 -> 6 -> 3 with tanh: 42 weights in dim>1 tensors, 51 parameters in all."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class TinyConvBN(nn.Module):
    """conv(2->3, 3x3) -> BatchNorm -> tanh -> mean pool -> linear(3->3): 63 weights in dim>1
    tensors, 75 parameters in all; BatchNorm in eval mode with non-trivial statistics."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(torch.tanh(self.bn(self.conv(x))).mean(dim=(2, 3)))


class PinnedSoftmaxRegression(nn.Module):
    """Softmax regression with the last logit pinned to 0: the cross-entropy is strictly convex
    in W (the pin removes the shift invariance of the softmax), so every eigenvalue of its
    Hessian is positive. Feature scales spread the spectrum (lambda_min < 0.02 lambda_max)."""

    def __init__(self, features: int = 5, classes: int = 3):
        super().__init__()
        self.weight = nn.Parameter(0.3 * torch.randn(classes - 1, features))
        self.register_buffer("scales", torch.tensor([2.0, 1.0, 0.5, 0.2, 0.08])[:features])

    def forward(self, x):
        return F.pad((x * self.scales) @ self.weight.T, (0, 1))


def tiny_case(kind: str, *, n: int = 24, batch_size: int = 10, seed: int = 0):
    """(model in float64 eval mode, float64 batches, all inputs, all labels)."""
    torch.manual_seed(seed)
    if kind == "mlp":
        model, x = TinyMLP(), torch.randn(n, 4)
        with torch.no_grad():
            model.fc1.weight.mul_(2.0)  # far from a minimum: a Hessian with negative eigenvalues
    elif kind == "conv":
        model, x = TinyConvBN(), torch.randn(n, 2, 4, 4)
        with torch.no_grad():
            model.bn.running_mean.uniform_(-0.5, 0.5)
            model.bn.running_var.uniform_(0.5, 2.0)
            model.bn.weight.uniform_(0.5, 1.5)
            model.bn.bias.uniform_(-0.3, 0.3)
    elif kind == "convex":
        model, x = PinnedSoftmaxRegression(), torch.randn(n, 5)
    else:
        raise ValueError(kind)
    y = torch.randint(0, 3, (n,))
    model.eval()
    batches = cast_model_and_batches(model, make_batches(x, y, batch_size), dtype=torch.float64)
    return model, batches, x.double(), y


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, params: str = "dim>1",
                  loss_name: str = "crossentropy") -> torch.Tensor:
    """Hessian of the mean loss over all samples w.r.t. the flat chosen parameters."""
    named = [(k, p.detach()) for k, p in model.named_parameters() if params == "all" or p.dim() > 1]
    names, shapes = [k for k, _ in named], [p.shape for _, p in named]
    sizes = [p.numel() for _, p in named]
    flat = torch.cat([p.reshape(-1) for _, p in named])

    def mean_loss(theta):
        tensors = [t.view(s) for t, s in zip(theta.split(sizes), shapes)]
        out = torch.func.functional_call(model, dict(zip(names, tensors)), (x,), strict=False)
        if loss_name == "crossentropy":
            return F.cross_entropy(out, y)
        return F.mse_loss(F.softmax(out, dim=1), F.one_hot(y, out.shape[1]).to(out.dtype))

    with warnings.catch_warnings():
        # torch.func.hessian is forward-over-reverse: forward-mode AD loads torch's own jvp
        # decompositions through torch.jit.script once, which warns about its deprecation
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated",
                                category=FutureWarning)
        return torch.func.hessian(mean_loss)(flat).detach()


def batch_sum_hvp(model: nn.Module, batches, v_parts, params) -> list[torch.Tensor]:
    """The reference's operator: sum over batches of the Hessian of the batch-MEAN loss."""
    out = [torch.zeros_like(p) for p in params]
    for xb, yb in batches:
        grads = torch.autograd.grad(F.cross_entropy(model(xb), yb), params, create_graph=True)
        dot = sum((g * v).sum() for g, v in zip(grads, v_parts))
        for o, h in zip(out, torch.autograd.grad(dot, params)):
            o += h
    return out


# The algorithms on top of the products are tested with the mode that is fastest on tiny nets
# (torch.func adds ~10 ms per product there); every mode is checked against the dense Hessian.
FAST = {"mode": "double_backward"}


def random_vectors(n: int, count: int = 3, seed: int = 5) -> torch.Tensor:
    return torch.randn(count, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- products
@pytest.mark.parametrize("mode", HVP_MODES)
@pytest.mark.parametrize("params", PARAM_SETS)
@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_hvp_equals_dense_hessian_times_v(kind, params, mode):
    model, batches, x, y = tiny_case(kind)
    op = HessianOperator(model, batches, num_classes=3, params=params, mode=mode)
    dense = dense_hessian(model, x, y, params=params)
    assert op.shape == tuple(dense.shape) and op.dtype == torch.float64
    assert op.size == {("mlp", "dim>1"): 42, ("mlp", "all"): 51,
                       ("conv", "dim>1"): 63, ("conv", "all"): 75}[kind, params]
    for v in random_vectors(op.size):
        hv = op.matvec(v)
        assert (hv - dense @ v).abs().max() <= 1e-10 * max(1.0, float(hv.abs().max()))
    assert op.counter.count == 3


class _SquareNoForwardAD(torch.autograd.Function):
    """An old-style custom function: backward only, unusable under torch.func transforms."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class CustomFunctionNet(TinyMLP):
    def forward(self, x):
        return self.fc2(_SquareNoForwardAD.apply(torch.tanh(self.fc1(x))))


def test_auto_mode_falls_back_to_double_backward_for_models_torch_func_cannot_run():
    torch.manual_seed(0)
    model = CustomFunctionNet().double().eval()
    batches = make_batches(torch.randn(12, 4, dtype=torch.float64), torch.randint(0, 3, (12,)), 5)
    v = random_vectors(42, 1)[0]
    with pytest.raises(RuntimeError):
        HessianOperator(model, batches, num_classes=3, mode="reverse_over_forward").matvec(v)
    auto = HessianOperator(model, batches, num_classes=3)
    assert auto.mode == "reverse_over_forward"
    hv = auto.matvec(v)
    assert auto.mode == "double_backward" and "autograd.Function" in auto.fallback_reason
    explicit = HessianOperator(model, batches, num_classes=3, mode="double_backward").matvec(v)
    assert torch.equal(hv, explicit) and auto.counter.count == 1
    # a model torch.func can run keeps the fast mode
    tiny, tiny_batches, _, _ = tiny_case("mlp")
    fast = HessianOperator(tiny, tiny_batches, num_classes=3)
    fast.matvec(v)
    assert fast.mode == "reverse_over_forward" and fast.fallback_reason == ""


def test_hvp_mse_loss_and_unequal_batches():
    model, batches, x, y = tiny_case("conv", n=23, batch_size=7)  # batches of 7, 7, 7, 2
    op = HessianOperator(model, batches, num_classes=3, loss_name="mse")
    dense = dense_hessian(model, x, y, loss_name="mse")
    v = random_vectors(op.size, 1)[0]
    assert torch.allclose(op.matvec(v), dense @ v, rtol=0, atol=1e-12)


def test_mean_normalization_is_reference_sum_over_batch_means_divided_by_batch_count():
    model, batches, _, _ = tiny_case("conv", n=24, batch_size=8)  # 3 equal batches
    op = HessianOperator(model, batches, num_classes=3)
    params = [p for p in model.parameters() if p.dim() > 1]
    v = random_vectors(op.size, 1)[0]
    reference = op.flatten(batch_sum_hvp(model, batches, op.unflatten(v), params))
    ours = op.matvec(v)
    assert torch.allclose(reference, 3 * ours, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(reference, ours, rtol=0.1)


def test_products_follow_weights_moved_in_place():
    model, batches, x, y = tiny_case("mlp")
    op = HessianOperator(model, batches, num_classes=3)
    with torch.no_grad():
        model.fc1.weight.add_(0.3)
    v = random_vectors(op.size, 1)[0]
    assert torch.allclose(op.matvec(v), dense_hessian(model, x, y) @ v, rtol=0, atol=1e-12)


def test_float32_by_default_and_close_to_float64():
    torch.manual_seed(0)
    model, x = TinyConvBN().eval(), torch.randn(16, 2, 4, 4)
    y = torch.randint(0, 3, (16,))
    op32 = HessianOperator(model, make_batches(x, y, 8), num_classes=3)
    v = random_vectors(op32.size, 1)[0]
    hv32 = op32.matvec(v)
    assert op32.dtype == torch.float32 and hv32.dtype == torch.float32
    assert op32.to_scipy().dtype == np.float32
    batches64 = cast_model_and_batches(model, make_batches(x, y, 8), dtype=torch.float64)
    hv64 = HessianOperator(model, batches64, num_classes=3).matvec(v)
    assert torch.allclose(hv32.double(), hv64, rtol=1e-4, atol=1e-5 * float(hv64.abs().max()))


def test_poll_is_called_between_batches():
    model, batches, _, _ = tiny_case("mlp", n=24, batch_size=10)  # 3 batches
    calls = []
    op = HessianOperator(model, batches, num_classes=3, poll=lambda: calls.append(1), **FAST)
    op.matvec(torch.ones(op.size, dtype=torch.float64))
    assert len(calls) == 3


def test_refuses_training_mode_mixed_dtypes_and_unknown_options():
    model, batches, _, _ = tiny_case("conv")
    with pytest.raises(ValueError, match="eval mode"):
        HessianOperator(model.train(), batches, num_classes=3)
    model.eval()
    with pytest.raises(ValueError, match="cast_model_and_batches"):
        HessianOperator(model, [(x.float(), y) for x, y in batches], num_classes=3)
    for bad in ({"params": "biases"}, {"mode": "finite_differences"}):
        with pytest.raises(ValueError, match="must be one of"):
            HessianOperator(model, batches, num_classes=3, **bad)
    with pytest.raises(LossError, match="unknown loss 'hinge'"):
        HessianOperator(model, batches, num_classes=3, loss_name="hinge")
    op = HessianOperator(model, batches, num_classes=3)
    with pytest.raises(ValueError, match="shape"):
        op.matvec(torch.ones(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="method"):
        extreme_eigenvalues(op, method="power")
    with pytest.raises(ValueError, match="tol"):
        extreme_eigenvalues(op, tol=0)


# --------------------------------------------------------------------------- scipy adapter
def test_scipy_adapter_shape_dtype_counter_and_products():
    model, batches, x, y = tiny_case("mlp")
    op = HessianOperator(model, batches, num_classes=3)
    linop = op.to_scipy()
    assert isinstance(linop, LinearOperator)
    assert linop.shape == (42, 42) and linop.dtype == np.float64
    assert linop.counter is op.counter and linop.counter.count == 0
    dense = dense_hessian(model, x, y).numpy()
    v = random_vectors(42, 4).numpy().T  # (42, 4)
    np.testing.assert_allclose(linop.matvec(v[:, 0]), dense @ v[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(linop.rmatvec(v[:, 1]), dense @ v[:, 1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(linop.matmat(v), dense @ v, rtol=0, atol=1e-12)
    np.testing.assert_allclose(linop.H @ v[:, 2], dense @ v[:, 2], rtol=0, atol=1e-12)
    assert linop.counter.count == 1 + 1 + 4 + 1
    values = eigsh(linop, k=1, which="LA", tol=1e-10)[0]
    assert abs(values[0] - np.linalg.eigvalsh(dense)[-1]) <= 1e-8 * abs(values[0])
    assert linop.counter.count > 7


# --------------------------------------------------------------------------- extreme eigenvalues
EIG_CASES = {"negative": "mlp", "batchnorm": "conv", "positive": "convex"}


@pytest.fixture(scope="module", params=list(EIG_CASES))
def eig_case(request):
    model, batches, x, y = tiny_case(EIG_CASES[request.param])
    exact = torch.linalg.eigvalsh(dense_hessian(model, x, y))
    if request.param == "positive":
        assert exact[0] > 0 and exact[0] < 0.02 * exact[-1]  # convex, and spread enough that
        # the reference's shift-by-0.51 trick reaches lambda_min
    else:
        assert exact[0] < 0 < exact[-1] and abs(exact[0]) < exact[-1]
    return request.param, model, batches, exact.numpy()


@pytest.mark.parametrize("method", EIGEN_METHODS)
def test_extreme_eigenvalues_match_dense_eigh(eig_case, method):
    _, model, batches, exact = eig_case
    op = HessianOperator(model, batches, num_classes=3, **FAST)
    result = extreme_eigenvalues(op, tol=1e-9, method=method)
    scale = abs(exact[-1])
    assert result.converged and result.method == method
    assert abs(result.lambda_max - exact[-1]) <= 1e-6 * scale
    assert abs(result.lambda_min - exact[0]) <= 1e-6 * scale
    assert result.hvps == op.counter.count > 0
    # the vectors are eigenvectors: H y = lambda y
    for column, value in zip(result.vectors.T, (result.lambda_max, result.lambda_min)):
        assert abs(float(column.norm()) - 1) < 1e-8
        assert float((op.matvec(column) - value * column).norm()) <= 1e-5 * scale


def test_reference_method_misses_lambda_min_of_a_well_conditioned_convex_hessian():
    """Documents the reference's limitation: with lambda_min > 0.02 lambda_max, H - 0.51 max I
    has its largest magnitude at lambda_max again, and "min" comes back as lambda_max."""
    torch.manual_seed(3)
    model = PinnedSoftmaxRegression()
    with torch.no_grad():
        model.scales.fill_(1.0)
    x, y = torch.randn(40, 5), torch.randint(0, 3, (40,))
    batches = cast_model_and_batches(model.eval(), make_batches(x, y, 20), dtype=torch.float64)
    exact = np.linalg.eigvalsh(dense_hessian(model, x.double(), y).numpy())
    assert exact[0] > 0.02 * exact[-1]
    op = HessianOperator(model, batches, num_classes=3, **FAST)
    ours = extreme_eigenvalues(op, tol=1e-9)
    assert abs(ours.lambda_min - exact[0]) <= 1e-6 * exact[-1]
    ref = reference_extreme_eigenvalues(op, tol=1e-9)
    assert abs(ref.lambda_min - exact[-1]) <= 1e-6 * exact[-1]


def test_warm_start_from_exact_vectors_converges_at_once_and_stays_correct():
    model, batches, x, y = tiny_case("mlp")
    op = HessianOperator(model, batches, num_classes=3, **FAST)
    cold = extreme_eigenvalues(op, tol=1e-6)
    warm = extreme_eigenvalues(op, tol=1e-6, start=cold.vectors)
    assert warm.hvps < cold.hvps and warm.hvps <= 6
    assert abs(warm.lambda_max - cold.lambda_max) <= 1e-5 * cold.lambda_max
    assert abs(warm.lambda_min - cold.lambda_min) <= 1e-5 * cold.lambda_max
    with torch.no_grad():  # a neighbouring point: warm start still gives the right answer
        model.fc1.weight.add_(0.05 * torch.randn_like(model.fc1.weight))
    exact = np.linalg.eigvalsh(dense_hessian(model, x, y).numpy())
    for method in ("lanczos", "reference"):
        moved = extreme_eigenvalues(op, tol=1e-9, start=cold.vectors, method=method)
        assert abs(moved.lambda_max - exact[-1]) <= 1e-6 * exact[-1]
        assert abs(moved.lambda_min - exact[0]) <= 1e-6 * exact[-1]


def test_lookahead_catches_an_extreme_eigenvalue_that_surfaces_late(monkeypatch):
    """A start vector almost inside span(u_max, u_2) with a 1e-5 trace of u_min: after 2 HVPs
    the residual test passes with lambda_2 as "lambda_min"; the lookahead finds lambda_min."""
    model, batches, x, y = tiny_case("mlp")
    values, vectors = torch.linalg.eigh(dense_hessian(model, x, y))
    scale = float(values[-1])
    assert float(values[1] - values[0]) > 0.01 * scale  # lambda_2 is clearly wrong
    start = vectors[:, -1] + vectors[:, 1] + 1e-5 * vectors[:, 0]
    op = HessianOperator(model, batches, num_classes=3, **FAST)
    found = extreme_eigenvalues(op, tol=1e-3, start=start)
    assert found.converged and abs(found.lambda_min - float(values[0])) <= 1e-3 * scale
    monkeypatch.setattr(eigen, "LOOKAHEAD_MIN", 0)
    monkeypatch.setattr(eigen, "LOOKAHEAD_FRACTION", 0.0)
    fooled = extreme_eigenvalues(op, tol=1e-3, start=start)
    assert fooled.hvps == 2 and abs(fooled.lambda_min - float(values[1])) <= 1e-3 * scale


def test_iteration_cap_reports_no_convergence():
    model, batches, _, _ = tiny_case("conv")
    op = HessianOperator(model, batches, num_classes=3, **FAST)
    result = extreme_eigenvalues(op, tol=1e-12, maxiter=3)
    assert not result.converged and result.hvps == 3
    assert result.lambda_min <= result.lambda_max


def test_same_seed_same_result_and_lanczos_needs_fewer_hvps_than_reference():
    model, batches, _, _ = tiny_case("conv")
    op = HessianOperator(model, batches, num_classes=3, **FAST)
    a, b = (extreme_eigenvalues(op, tol=1e-3, seed=7) for _ in range(2))
    assert (a.lambda_max, a.lambda_min, a.hvps) == (b.lambda_max, b.lambda_min, b.hvps)
    ref = extreme_eigenvalues(op, tol=1e-3, method="reference")
    assert a.hvps < ref.hvps


# --------------------------------------------------------------------------- centre extras
def test_top_k_equals_top_of_eigh():
    model, batches, x, y = tiny_case("conv")
    exact = np.linalg.eigvalsh(dense_hessian(model, x, y).numpy())[::-1]
    op = HessianOperator(model, batches, num_classes=3, **FAST)
    top = top_eigenvalues(op, k=5, tol=1e-9)
    assert top.converged and top.values.shape == (5,) and top.hvps == op.counter.count
    np.testing.assert_allclose(top.values, exact[:5], rtol=0, atol=1e-6 * exact[0])
    assert top.vectors.shape == (op.size, 5)
    gram = top.vectors.T @ top.vectors
    assert torch.allclose(gram, torch.eye(5, dtype=torch.float64), atol=1e-8)


def test_hutchinson_trace_converges_to_dense_trace():
    model, batches, x, y = tiny_case("mlp")
    dense = dense_hessian(model, x, y)
    trace = float(torch.trace(dense))
    op = HessianOperator(model, batches, num_classes=3, **FAST)
    few = hutchinson_trace(op, probes=30, seed=1)
    many = hutchinson_trace(op, probes=480, seed=2)
    assert few.hvps == 30 and many.hvps == 480 and many.samples.shape == (480,)
    # the standard error is right: it matches the exact Rademacher variance, and shrinks by ~4
    exact_stderr = math.sqrt(2 * (float((dense ** 2).sum()) - float((dense.diag() ** 2).sum())) / 480)
    assert 0.8 < many.stderr / exact_stderr < 1.25
    assert 2.5 < few.stderr / many.stderr < 6.5
    for estimate in (few, many):
        assert abs(estimate.trace - trace) <= 4 * estimate.stderr
    assert hutchinson_trace(op, probes=30, seed=1).trace == few.trace  # seeded


def test_spectral_density_weights_and_moments_match_dense_hessian():
    model, batches, x, y = tiny_case("mlp")
    dense = dense_hessian(model, x, y)
    n = dense.shape[0]
    op = HessianOperator(model, batches, num_classes=3, **FAST)
    probes, steps = 100, 4
    slq = spectral_density(op, probes=probes, steps=steps, seed=3)
    assert slq.hvps == probes * steps and slq.nodes.shape == slq.weights.shape == (probes * steps,)
    assert abs(slq.weights.sum() - 1) < 1e-12 and (slq.weights >= 0).all()
    eigs = torch.linalg.eigvalsh(dense).numpy()
    assert eigs[0] - 1e-9 <= slq.nodes.min() and slq.nodes.max() <= eigs[-1] + 1e-9
    power = torch.eye(n, dtype=torch.float64)
    for k in (1, 2):
        power = power @ dense
        # each probe's quadrature is exact for z^T H^k z / n (k < 2 steps), so the error is the
        # Rademacher sampling error of tr(H^k)/n: bounded by 4 exact standard errors
        stderr = math.sqrt(2 * (float((power ** 2).sum()) - float((power.diag() ** 2).sum()))
                           / n ** 2 / probes)
        assert abs(slq.moment(k) - float(torch.trace(power)) / n) <= 4 * stderr
    grid = np.linspace(eigs[0] - 1, eigs[-1] + 1, 4001)
    smooth = slq.density(grid, sigma=0.05 * (eigs[-1] - eigs[0]))
    assert abs(np.trapezoid(smooth, grid) - 1) < 1e-6 and (smooth >= 0).all()
    assert slq.density(grid).shape == grid.shape


def test_spectral_density_of_an_exhausted_krylov_space_is_the_exact_spectrum_measure():
    """With as many steps as parameters, each probe's quadrature is exact for every polynomial:
    the density's moments equal z^T H^k z / n for high k too."""
    model, batches, x, y = tiny_case("convex", n=30)  # 10 parameters
    dense = dense_hessian(model, x, y)
    op = HessianOperator(model, batches, num_classes=3, **FAST)
    slq = spectral_density(op, probes=1, steps=50, seed=0)
    assert slq.hvps <= 10
    exact = torch.linalg.eigvalsh(dense).numpy()
    np.testing.assert_allclose(np.sort(slq.nodes), exact, rtol=0, atol=1e-9 * exact[-1])
    z = hutchinson_trace(op, probes=2, seed=0).samples[0]  # the same first probe: z^T H z
    assert abs(slq.moment(1) * 10 - z) <= 1e-10 * abs(z)


# --------------------------------------------------------------------------- NaN and inf
class KinkedMLP(TinyMLP):
    """TinyMLP plus ``sqrt(||fc2.weight - start||^2)`` on every logit: the loss is finite at the
    start, but the gradient there is inf * 0 = NaN, so every Hessian-vector product is NaN."""

    def __init__(self):
        super().__init__()
        self.start = self.fc2.weight.detach().clone()

    def forward(self, x):
        return super().forward(x) + torch.sqrt((self.fc2.weight - self.start).pow(2).sum())


class NaNBeyond(TinyMLP):
    """TinyMLP whose output is a constant NaN where fc2.weight is more than ``radius`` x its
    starting norm away from its start: the loss is NaN there, but no derivative reaches the
    weights, so every Hessian-vector product is 0 (finite)."""

    def __init__(self, radius: float):
        super().__init__()
        self.start, self.radius = self.fc2.weight.detach().clone(), radius

    def forward(self, x):
        out = super().forward(x)
        far = (self.fc2.weight - self.start).norm() > self.radius * self.start.norm()
        return torch.where(far, torch.full_like(out, math.nan), out)


def _double_case(model: nn.Module, n: int = 24):
    torch.manual_seed(1)
    x, y = torch.randn(n, 4), torch.randint(0, 3, (n,))
    return cast_model_and_batches(model.eval(), make_batches(x, y, 10), dtype=torch.float64)


@pytest.mark.parametrize("method", EIGEN_METHODS)
def test_nan_products_raise_non_finite_hessian_in_every_method(method):
    torch.manual_seed(0)
    model = KinkedMLP()
    op = HessianOperator(model, _double_case(model), num_classes=3, **FAST)
    assert math.isfinite(op.check_finite_loss())
    with pytest.raises(NonFiniteHessian, match="NaN or inf"):
        extreme_eigenvalues(op, method=method)
    for estimate in (lambda: top_eigenvalues(op, k=2), lambda: hutchinson_trace(op, probes=2),
                     lambda: spectral_density(op, probes=1, steps=3)):
        with pytest.raises(NonFiniteHessian):
            estimate()


def test_curvature_map_is_nan_where_the_loss_is_nan_even_with_zero_products():
    """Points beyond the radius have a NaN loss and zero products: NaN eigenvalues (not 0) and
    no HVPs; the points between them are finite, warm start included."""
    torch.manual_seed(0)
    model = NaNBeyond(radius=0.75)
    evalset = EvalSet(_double_case(model), 3)
    direction = [torch.zeros_like(p) if name != "fc2.weight" else p.detach().clone()
                 for name, p in model.named_parameters()]
    xs = np.linspace(-1, 1, 5)  # |x| * ||start|| from the start: NaN at x = -1 and 1
    with maps.hessian_task(model=model, directions=[direction], dir_type="weights", xcoordinates=xs,
                           ycoordinates=None, evalset=evalset, loss_name="crossentropy",
                           settings=maps.EigenSettings(float64=True)) as evaluate_points:
        values = evaluate_points([(k, ("eig",)) for k in range(5)], lambda: None)
    for k in (0, 4):
        assert math.isnan(values[k]["max_eig"]) and math.isnan(values[k]["min_eig"])
        assert values[k]["eig_hvps"] == 0
    for k in (1, 2, 3):
        assert np.isfinite([values[k]["max_eig"], values[k]["min_eig"]]).all()
        assert values[k]["max_eig"] > 0 and values[k]["eig_hvps"] > 2


@pytest.mark.parametrize("model", [KinkedMLP, lambda: NaNBeyond(radius=-1.0)], ids=["nan_products", "nan_loss"])
def test_centre_extras_of_a_non_finite_centre_are_nan(model):
    torch.manual_seed(0)
    net = model()
    arrays, attrs = maps.centre_extras(net, EvalSet(_double_case(net), 3), loss_name="crossentropy",
                                       settings=maps.EigenSettings(float64=True), top_k=3,
                                       trace_probes=4, density_probes=2, density_steps=5)
    assert attrs["finite"] is False and attrs["nonfinite"]
    assert arrays["top_eigenvalues"].shape == (3,) and np.isnan(arrays["top_eigenvalues"]).all()
    assert arrays["trace_samples"].shape == (4,) and math.isnan(attrs["trace"])
    assert not {"density", "density_nodes", "density_grid"} & set(arrays)
    text = maps.format_centre_extras(arrays, attrs)
    assert "not finite" in text and "stored as NaN" in text
