"""How close is the surface loop to the floor? Prints ratios measured in one run.

    .venv/bin/python bench/bench_surface.py                 # resnet20 and resnet56, 1,000 images, 5x5 grid
    .venv/bin/python bench/bench_surface.py --memory        # also: peak RSS of the real CLI on 50,000 images

The floor is a bare loop of eval-mode forward passes over the same cached tensors (no loss,
no weight setting, no file). "Ours" is the real grid loop (grid_runner.run_grid with
surface.point_evaluator and a surface file): setting the weights of each point, loss and
accuracy, bookkeeping and file writes included.

This machine's speed drifts by +-12% from one pass to the next, so the two are interleaved:
before each of our grid points, one floor pass runs and is timed. Ours = loop time minus the
floor passes. The options (channels_last, torch.compile) are measured the same way against
the eager floor, giving speed-ups; the one-time compile cost is reported separately.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np
import torch

from loss_landscape_toolkit import h5io as h5_util
from loss_landscape_toolkit.directions import PlaneSetter, create_random_direction, tensors_of
from loss_landscape_toolkit.evaluation import make_batches, prepare_model
from loss_landscape_toolkit.models import create_model
from loss_landscape_toolkit.parallel.grid import per_point, run_grid
from loss_landscape_toolkit.parallel.world import World
from loss_landscape_toolkit.surface import EvalSet, point_evaluator


def interleaved(name: str, data, grid: int, **options) -> tuple[float, float]:
    """(ours, floor) seconds per point, measured alternately on the same grid run."""
    floor_model = create_model(name).eval()
    floor_batches = make_batches(*data, 128)
    model = create_model(name).eval()
    forward = prepare_model(model, **options)
    batches = make_batches(*data, 128, channels_last=options.get("channels_last", False))
    g = torch.Generator().manual_seed(0)
    directions = [create_random_direction(tensors_of(model, "weights"), norm="filter",
                                          ignore="biasbn", generator=g) for _ in range(2)]
    axis = np.linspace(-1, 1, grid)
    ours_point = point_evaluator(forward, PlaneSetter(model, directions, dir_type="weights"),
                                 axis, axis, {"train": EvalSet(batches, 10)}, loss_name="crossentropy")
    floor_times = []

    def paired(index, needs, poll):
        start = time.perf_counter()
        with torch.inference_mode():
            for xb, _ in floor_batches:
                floor_model(xb)
        floor_times.append(time.perf_counter() - start)
        return ours_point(index, needs, poll)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "surface.h5")
        h5_util.create_surface_file(path, dir_file="", xcoordinates=axis, ycoordinates=axis, attrs={})
        stats = run_grid(world=World(), surf_file=path, groups=[h5_util.TRAIN],
                         evaluate_points=per_point(paired), progress=False)
    floor = sum(floor_times)
    return (stats.seconds - floor) / stats.computed, floor / stats.computed


def bench_model(name: str, images: int, grid: int, compile_too: bool) -> None:
    torch.manual_seed(0)
    data = (torch.randn(images, 3, 32, 32), torch.randint(0, 10, (images,)))
    print(f"{name}: {images} images, batch 128, {grid}x{grid} grid, {torch.get_num_threads()} threads")
    ours, floor = interleaved(name, data, grid)
    print(f"  floor (bare forward loop)   {floor:8.3f} s/point")
    print(f"  ours  (grid loop)           {ours:8.3f} s/point   ratio ours/floor = {ours / floor:.3f}")
    ours, floor = interleaved(name, data, grid, channels_last=True)
    print(f"  --channels_last             {ours:8.3f} s/point   speed-up over the eager floor x{floor / ours:.2f}")
    if compile_too:
        start = time.perf_counter()
        interleaved(name, data, 1, compile=True)  # the one-time compile
        compile_cost = time.perf_counter() - start
        ours, floor = interleaved(name, data, grid, compile=True)
        print(f"  --compile                   {ours:8.3f} s/point   speed-up over the eager floor "
              f"x{floor / ours:.2f} (one-time compile {compile_cost:.0f} s per process)")
    print(f"  peak RSS so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB", flush=True)


def write_cifar_like(folder: str, n_train: int) -> None:
    """CIFAR-10 python batches of random images (the real file format)."""
    import pickle

    target = os.path.join(folder, "cifar-10-batches-py")
    os.makedirs(target)
    rng = np.random.default_rng(0)
    per = n_train // 5
    for i in range(5):
        batch = {b"data": rng.integers(0, 256, (per, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, per).tolist()}
        with open(os.path.join(target, f"data_batch_{i + 1}"), "wb") as f:
            pickle.dump(batch, f, protocol=2)


def bench_memory(model: str, images: int) -> None:
    """Peak RSS of the real plot_surface.py computing one point over ``images`` images."""
    with tempfile.TemporaryDirectory() as tmp:
        write_cifar_like(tmp, images)
        cmd = [sys.executable, os.path.join(ROOT, "plot_surface.py"), "--model", model,
               "--dataset", "cifar10", "--datapath", tmp, "--x=0:0:1", "--surf_file",
               os.path.join(tmp, "s.h5"), "--no_progress"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=tmp, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"memory: plot_surface.py --model {model} on {images} CIFAR-shaped images, one point: "
          f"peak RSS {peak:.0f} MiB ({seconds:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet20,resnet56")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--grid", type=int, default=5)
    parser.add_argument("--no_compile", action="store_true", help="skip the torch.compile measurement")
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS on 50,000 images")
    parser.add_argument("--memory_images", type=int, default=50000)
    args = parser.parse_args()
    for name in filter(None, args.models.split(",")):  # --models "" skips the speed part
        bench_model(name, args.images, args.grid, not args.no_compile)
    if args.memory:
        bench_memory("resnet56", args.memory_images)


if __name__ == "__main__":
    main()
