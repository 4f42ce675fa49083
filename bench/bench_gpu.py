"""The GPU path: seconds per grid point of resnet56 on 50,000 CIFAR-shaped images, by option.

    .venv/bin/python bench/bench_gpu.py                       # on a machine with a GPU
    .venv/bin/python bench/bench_gpu.py --device cpu --images 256 --model resnet20 --points 1   # smoke run

Each configuration evaluates a few points of a 51x51 grid through the real work function
(surface.surface_task, the same as plot_surface.py) after one warm-up chunk, and extrapolates
the whole grid on one device. The paper's code took about an hour on four GTX 1080 Ti for
this; the goal here is at most 10 minutes on one H100.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np
import torch

from loss_landscape_toolkit.directions import create_random_direction, tensors_of
from loss_landscape_toolkit.evaluation import make_batches
from loss_landscape_toolkit.models import create_model
from loss_landscape_toolkit.surface import EvalSet, surface_task

CONFIGS = {  # name: options of surface_task ("Npts": N grid points per forward pass)
    "fp32": {},
    "channels_last": {"channels_last": True},
    "bf16": {"bf16": True},
    "bf16+channels_last": {"bf16": True, "channels_last": True},
    "bf16+channels_last+4pts": {"bf16": True, "channels_last": True, "points_per_forward": 4},
    "fp32+8pts": {"points_per_forward": 8},
    "bf16+channels_last+compile": {"bf16": True, "channels_last": True, "compile": True},
}


def seconds_per_point(name: str, data, device, grid: int, points: int, batch_size: int, options) -> float:
    model = create_model(name).to(device).eval()
    g = torch.Generator().manual_seed(0)
    directions = [create_random_direction(tensors_of(model, "weights"), norm="filter",
                                          ignore="biasbn", generator=g) for _ in range(2)]
    axis = np.linspace(-1, 1, grid)
    batches = make_batches(*data, batch_size, device=device,
                           channels_last=options.get("channels_last", False))
    chunk = options.get("points_per_forward", 1)
    spread = np.linspace(0, grid * grid - 1, (points + 1) * chunk).astype(int)  # over the whole grid
    items = [(int(k), ("train",)) for k in spread]
    with surface_task(model=model, directions=directions, dir_type="weights", xcoordinates=axis,
                      ycoordinates=axis, evalsets={"train": EvalSet(batches, 10)},
                      loss_name="crossentropy", **options) as evaluate_points:
        evaluate_points(items[:chunk], lambda: None)  # warm-up (compilation, cuDNN autotuning)
        start = time.perf_counter()
        done = 0
        for i in range(points):
            work = items[(i + 1) * chunk:(i + 2) * chunk]
            evaluate_points(work, lambda: None)  # returns floats: the device is synchronised
            done += len(work)
        return (time.perf_counter() - start) / done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--images", type=int, default=50000)
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--grid", type=int, default=51)
    parser.add_argument("--points", type=int, default=3, help="timed chunks per configuration")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of: "
                        + ", ".join(CONFIGS))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        print(f"device: {torch.cuda.get_device_name(device)}")
    torch.manual_seed(0)
    data = (torch.randn(args.images, 3, 32, 32), torch.randint(0, 10, (args.images,)))
    total = args.grid * args.grid
    print(f"{args.model}, {args.images} images, batch {args.batch_size}, {args.grid}x{args.grid} = {total} points")
    base = None
    for name in args.configs.split(","):
        per_point = seconds_per_point(args.model, data, device, args.grid, args.points, args.batch_size,
                                      CONFIGS[name])
        base = base or per_point
        print(f"  {name:38s} {per_point:8.3f} s/point  x{base / per_point:4.2f}  "
              f"whole grid on one device: {per_point * total / 60:6.1f} min", flush=True)


if __name__ == "__main__":
    main()
