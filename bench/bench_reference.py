"""Per-point speed of a default plot_surface.py run against the reference code's loop, one run.

    .venv/bin/python bench/bench_reference.py                        # resnet20 and resnet56, 500 images
    .venv/bin/python bench/bench_reference.py --models resnet56 --images 1000 --points 6

Both sides compute the same grid points of the same model on the same CIFAR-format images
(random uint8 pixels and labels), in one process:

- reference: the reference's loop as written in its plot_surface.py / evaluation.py, kept here
  as an equivalent: for every point, ``p.data`` is reassigned to ``w + x * d``, and a DataLoader
  over the images (per-image ToTensor and Normalize, 2 workers, batch 128, as its default train
  loader) feeds ``eval_loss``: eval mode, no_grad, cross-entropy and accuracy per batch.
- ours (default flags): the real per-point work of the grid loop (surface_task), with the speed
  options chosen as plot_surface.py chooses them when no flag is given (file writes, made every
  --flush_secs in a run, are left out).
- ours without each default speed option (--no_fold_bn, --no_channels_last, neither), with
  other evaluation batch sizes (--batch_sizes), and with --compile (--compile), to show what
  each choice is worth.

Points of the variants are interleaved (reference, ours, ... for each point), so the machine's
drift hits all alike; the median per point is reported, start-up excluded. The FLOP limit is
this CPU's float32 matrix-multiply rate measured here; "of the limit" is the model's forward
FLOPs per point divided by (seconds per point x that rate).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms

from loss_landscape_toolkit._devices import set_threads
from loss_landscape_toolkit.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD
from loss_landscape_toolkit.directions import create_random_direction, tensors_of
from loss_landscape_toolkit.evaluation import make_batches
from loss_landscape_toolkit.models import create_model
from loss_landscape_toolkit.surface import EvalSet, settle_channels_last, surface_task


def seeded_model(name: str) -> torch.nn.Module:
    """The same initial weights on every call (the centre of every variant)."""
    torch.manual_seed(0)
    return create_model(name)


class CifarLike(Dataset):
    """uint8 HWC images transformed per item, as torchvision's CIFAR10 dataset does."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), int(self.labels[i])


class ReferenceLoop:
    """The reference's per-point work: reassign the weights, reload the data, eval_loss."""

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray, direction, coords):
        self.net = seeded_model(name)
        self.w = [p.data.clone() for p in self.net.parameters()]
        self.d, self.coords = direction, coords
        self.loader = DataLoader(CifarLike(images, labels), batch_size=128, shuffle=False, num_workers=2)

    def point(self, k: int) -> float:
        for p, w, d in zip(self.net.parameters(), self.w, self.d):
            p.data = w + d * float(self.coords[k])
        self.net.eval()
        total, correct, n = 0.0, 0, 0
        with torch.no_grad():
            for inputs, targets in self.loader:
                outputs = self.net(inputs)
                total += F.cross_entropy(outputs, targets).item() * len(targets)
                correct += outputs.max(1)[1].eq(targets).sum().item()
                n += len(targets)
        return total / n


class OurLoop:
    """The real per-point work of the grid loop (surface_task: weights set in place, loss and
    accuracy over the cached batches), with the speed options a run would choose. The surface
    file writes are left out: a run makes them every --flush_secs, not per point."""

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray, direction, coords, *,
                 channels_last: bool | None = None, compile: bool = False, fold_bn: bool = True,
                 batch_size: int = 128):
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (CIFAR10_MEAN, CIFAR10_STD))
        batches = make_batches((x - mean) / std, torch.from_numpy(labels).long(), batch_size)
        self.model = seeded_model(name).eval()
        evalsets = {"train": EvalSet(batches, 10)}
        cl, self.why = settle_channels_last(channels_last, self.model, evalsets)
        self.task = surface_task(model=self.model, directions=[direction], dir_type="weights",
                                 xcoordinates=coords, ycoordinates=None, evalsets=evalsets,
                                 loss_name="crossentropy", channels_last=cl, compile=compile, fold_bn=fold_bn)
        self.evaluate = self.task.__enter__()
        self.evaluate([(0, ("train",))], lambda: None)  # warm-up (and the compile, if any)

    def point(self, k: int) -> float:
        return float(self.evaluate([(k, ("train",))], lambda: None)[0]["train_loss"])


def matmul_gflops() -> float:
    """This CPU's float32 matrix-multiply rate (GFLOP/s), best of a few runs."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 2048**3 / best / 1e9


def forward_flops(name: str, images: int) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        create_model(name).eval()(torch.randn(images, 3, 32, 32))
    return float(counter.get_total_flops())


def bench_model(name: str, images: int, points: int, compile_too: bool, batch_sizes: list[int]) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=images)
    direction = create_random_direction(tensors_of(seeded_model(name), "weights"), norm="filter", ignore="biasbn",
                                        generator=torch.Generator().manual_seed(1))
    coords = np.linspace(-1, 1, points + 1)
    loops = {"reference loop": ReferenceLoop(name, pixels, labels, direction, coords)}
    loops["ours, default"] = OurLoop(name, pixels, labels, direction, coords)
    loops["ours, --no_fold_bn"] = OurLoop(name, pixels, labels, direction, coords, fold_bn=False)
    loops["ours, --no_channels_last"] = OurLoop(name, pixels, labels, direction, coords, channels_last=False)
    loops["ours, neither"] = OurLoop(name, pixels, labels, direction, coords, channels_last=False, fold_bn=False)
    for size in batch_sizes:
        loops[f"ours, --batch_size {size}"] = OurLoop(name, pixels, labels, direction, coords, batch_size=size)
    if compile_too:
        loops["ours, --compile"] = OurLoop(name, pixels, labels, direction, coords, compile=True)
        loops["ours, --compile --no_fold_bn"] = OurLoop(name, pixels, labels, direction, coords, compile=True,
                                                        fold_bn=False)
    seconds: dict[str, list[float]] = {k: [] for k in loops}
    values: dict[str, list[float]] = {k: [] for k in loops}
    for k in range(1, points + 1):
        for label, loop in loops.items():
            start = time.perf_counter()
            values[label].append(loop.point(k))
            seconds[label].append(time.perf_counter() - start)
    reference = statistics.median(seconds["reference loop"])
    limit = forward_flops(name, images) / (matmul_gflops() * 1e9)
    print(f"{name}: {images} images, {points} points, {torch.get_num_threads()} threads; "
          f"default chose channels_last ({loops['ours, default'].why}) and fold_bn; FLOP limit {limit:.3f} s/point")
    for label in loops:
        per = statistics.median(seconds[label])
        gap = max(abs(a - b) for a, b in zip(values[label], values["reference loop"]))
        print(f"  {label:30s} {per:7.3f} s/point  x{reference / per:5.2f} vs reference  "
              f"{100 * limit / per:4.0f}% of the FLOP limit  (max |loss - reference| {gap:.1e})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet20,resnet56")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--points", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also measure --compile (slow to start)")
    parser.add_argument("--batch_sizes", default="", help="also measure these evaluation batch sizes, e.g. 256,500")
    args = parser.parse_args()
    print(f"threads: {set_threads(None)}")
    for name in args.models.split(","):
        bench_model(name, args.images, args.points, args.compile,
                    [int(b) for b in args.batch_sizes.split(",") if b])


if __name__ == "__main__":
    main()
