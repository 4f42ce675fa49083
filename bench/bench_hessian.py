"""Hessian numerics: how fast is an HVP, and how many HVPs does a grid point need?

    .venv/bin/python bench/bench_hessian.py              # both parts, a few minutes on 2 cores
    .venv/bin/python bench/bench_hessian.py --part speed  # only the HVP / gradient timing
    .venv/bin/python bench/bench_hessian.py --part eigen --model resnet20 --images 64 --points 2

Part 1 (speed): on ResNet-20 in float32 with CIFAR-shaped random images, the time of one
Hessian-vector product of the mean loss (over the dim>1 parameters, as the grid uses) divided
by the time of one gradient of the same loss over the same batches, for each HVP mode of
hessian.HessianOperator. This machine's speed drifts from pass to pass (other jobs share its
2 cores), so the passes are interleaved round by round and the median of the per-round ratios
is reported.

Part 2 (eigen): HVPs per grid point for the pair (lambda_max, lambda_min) at --tol, by our
Lanczos and by the reference's method (eigsh 'LM', then 'LM' on H - 0.51 lambda_max I), both on
the SAME float32 operator, along a short line of grid points through a trained model, cold
(seeded random start) and warm (started from the previous point's eigenvectors). Both are
checked against a tightly converged solution at every point (errors relative to |lambda_max|).
By default the model is a small BatchNorm CNN trained for a few seconds on the real digits
data, so a point costs HVPs of ~0.1 s and the whole line takes a minute or two.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np
import torch
from torch import nn

from loss_landscape_toolkit.data import load_eval_data
from loss_landscape_toolkit.directions import PlaneSetter, create_random_direction, tensors_of
from loss_landscape_toolkit.evaluation import evaluate, make_batches
from loss_landscape_toolkit.hessian import HVP_MODES, HessianOperator, eigen, extreme_eigenvalues
from loss_landscape_toolkit.models import create_model


# --------------------------------------------------------------------------- part 1: speed
def bench_speed(*, images: int, rounds: int) -> None:
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    batches = make_batches(torch.randn(images, 3, 32, 32), torch.randint(0, 10, (images,)), 128)
    modes = [mode for mode in HVP_MODES if mode != "auto"]
    ops = {mode: HessianOperator(model, batches, num_classes=10, mode=mode) for mode in modes}
    any_op = ops["double_backward"]
    print(f"speed: resnet20, {images} CIFAR-shaped images, batch 128, float32, "
          f"{any_op.size:,} parameters (dim>1), {torch.get_num_threads()} threads, {rounds} rounds")
    v = torch.randn(any_op.size, generator=torch.Generator().manual_seed(1))
    products = {mode: op.matvec(v) for mode, op in ops.items()}  # warm-up, and agreement
    any_op.gradient()
    reference = products["double_backward"]
    times: dict[str, list[float]] = {"gradient": [], **{mode: [] for mode in modes}}
    for _ in range(rounds):
        times["gradient"].append(_timed(any_op.gradient))
        for mode, op in ops.items():
            times[mode].append(_timed(lambda op=op: op.matvec(v)))
    grad = times["gradient"]
    print(f"  gradient                  {statistics.median(grad):7.3f} s (median; min {min(grad):.3f})")
    ratios = {}
    for mode in modes:
        paired = [t / g for t, g in zip(times[mode], grad)]
        ratios[mode] = statistics.median(paired)
        diff = float((products[mode] - reference).norm() / reference.norm())
        print(f"  HVP {mode:<22}{statistics.median(times[mode]):7.3f} s   HVP/gradient: median "
              f"{ratios[mode]:.2f} (min/min {min(times[mode]) / min(grad):.2f})   "
              f"relative difference to double_backward {diff:.1e}")
    best = min(ratios, key=ratios.get)
    print(f"  fastest: {best} (HVP/gradient {ratios[best]:.2f}; goal <= 3)", flush=True)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --------------------------------------------------------------------------- part 2: eigen
class SmallCNN(nn.Module):
    """conv-BN-ReLU x2, 4x4 average pool and a linear head: 3,928 weights in dim>1 tensors."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        return self.head(self.features(x))


def trained_model(name: str, x: torch.Tensor, y: torch.Tensor, *, epochs: int) -> nn.Module:
    """A model trained briefly with SGD on (x, y), so the Hessian is the one near a minimum."""
    torch.manual_seed(0)
    model = SmallCNN() if name == "small_cnn" else create_model(name)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 32):
            idx = order[i:i + 32]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
    return model.eval()


@contextlib.contextmanager
def lookahead(on: bool):
    """Our Lanczos with its confirmation lookahead (default) or with the bare residual test."""
    saved = eigen.LOOKAHEAD_MIN, eigen.LOOKAHEAD_FRACTION
    if not on:
        eigen.LOOKAHEAD_MIN, eigen.LOOKAHEAD_FRACTION = 0, 0.0
    try:
        yield
    finally:
        eigen.LOOKAHEAD_MIN, eigen.LOOKAHEAD_FRACTION = saved


def bench_eigen(*, model_name: str, images: int, points: int, span: float, tol: float,
                epochs: int) -> None:
    data = load_eval_data("digits", split="train")
    x, y = data.x[:images], data.y[:images]
    start = time.perf_counter()
    model = trained_model(model_name, x, y, epochs=epochs)
    batches = make_batches(x, y, 128)
    loss, acc = evaluate(model, batches, num_classes=10)
    op = HessianOperator(model, batches, num_classes=10)
    direction = create_random_direction(tensors_of(model, "weights"), norm="filter", ignore="biasbn",
                                        generator=torch.Generator().manual_seed(123))
    setter = PlaneSetter(model, [direction], dir_type="weights")
    coords = np.linspace(-span, span, points)
    print(f"\neigen: {model_name} trained {epochs} epochs on {images} digits images "
          f"({time.perf_counter() - start:.0f} s; centre loss {loss:.3f}, acc {acc:.1f}%), "
          f"{op.size:,} parameters (dim>1), float32, tol {tol:g}, {points} points on "
          f"x in [{-span:g}, {span:g}] along a filter-normalized direction")
    runs = {"ours cold": ("lanczos", False), "ours warm": ("lanczos", True),
            "ours no-lookahd": ("lanczos", False),
            "reference cold": ("reference", False), "reference warm": ("reference", True),
            "eigsh BE cold": ("eigsh", False)}
    hvps = {name: [] for name in runs}
    errors = {name: [] for name in runs}
    ours_vs_reference = []
    previous: dict[str, torch.Tensor | None] = dict.fromkeys(runs)
    header = "".join(f"{name:>16}" for name in runs)
    print(f"  {'x':>6} {'lambda_max':>11} {'lambda_min':>11} {'truth HVPs':>10} | HVPs:{header}")
    for a in coords:
        setter.set([float(a)])
        truth = extreme_eigenvalues(op, tol=1e-7, maxiter=op.size, seed=99)
        scale = abs(truth.lambda_max)
        row = []
        for name, (method, warm) in runs.items():
            with lookahead(name != "ours no-lookahd"):
                result = extreme_eigenvalues(op, tol=tol, method=method,
                                             start=previous[name] if warm else None)
            previous[name] = result.vectors
            hvps[name].append(result.hvps)
            errors[name].append(max(abs(result.lambda_max - truth.lambda_max),
                                    abs(result.lambda_min - truth.lambda_min)) / scale)
            row.append(f"{result.hvps:>16}")
            if name in ("ours cold", "reference cold"):
                ours_vs_reference.append((result.lambda_max / scale, result.lambda_min / scale))
        print(f"  {a:6.2f} {truth.lambda_max:11.4e} {truth.lambda_min:11.4e} {truth.hvps:>10} |"
              f"      {''.join(row)}", flush=True)
    setter.restore()
    print(f"  {'mean HVPs per point':<48}      "
          + "".join(f"{np.mean(hvps[name]):>16.1f}" for name in runs))
    print(f"  {'worst error / |lambda_max|':<48}      "
          + "".join(f"{max(errors[name]):>16.1e}" for name in runs))
    pairs = np.array(ours_vs_reference).reshape(points, 2, 2)  # (point, ours/ref, max/min)
    print(f"  ours cold vs reference cold: largest difference {np.abs(pairs[:, 0] - pairs[:, 1]).max():.1e}"
          f" x |lambda_max|")
    ours, ref = np.mean(hvps["ours cold"]), np.mean(hvps["reference cold"])
    print(f"  ours cold needs {ours / ref:.2f}x the reference's HVPs; ours warm "
          f"{np.mean(hvps['ours warm']) / ref:.2f}x; reference warm "
          f"{np.mean(hvps['reference warm']) / ref:.2f}x", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "speed", "eigen"), default="all")
    parser.add_argument("--speed_images", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--model", default="small_cnn", help="small_cnn or a zoo name")
    parser.add_argument("--images", type=int, default=256, help="digits images for part 2")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--points", type=int, default=7)
    parser.add_argument("--span", type=float, default=0.5)
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.part in ("all", "speed"):
        bench_speed(images=args.speed_images, rounds=args.rounds)
    if args.part in ("all", "eigen"):
        bench_eigen(model_name=args.model, images=args.images, points=args.points, span=args.span,
                    tol=args.tol, epochs=args.epochs)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
