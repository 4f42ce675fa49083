"""Optimization path of a training run in the plane of its two principal components.

    python plot_trajectory.py --model resnet56 --model_folder trained_nets/<run> \\
        --start_epoch 0 --max_epoch 300 --save_epoch 10

Reads {model_folder}/{prefix}{epoch}{suffix} for every epoch, writes the PCA directions to
{model_folder}/PCA_{dir_type}[_ignore=..]_save_epoch={n}/directions.h5, the path's coordinates to
directions.h5_proj_cos.h5, and the figure directions.h5_proj_cos.h5.pdf; then prints the
plot_surface.py command that draws the loss contours of that plane with the path on them.
"""
from __future__ import annotations

import argparse
import math
import shlex
from typing import Sequence

import numpy as np

from .. import plotting, projection
from .._naming import pca_dir_file
from .._options import DIR_TYPES, IGNORES, PROJ_METHODS
from ..errors import UsageError
from ..models.loading import build_model
from ..parallel.world import World
from . import args as cli_args
from .auto_range import readable_ceil
from .job import provenance

PROG = "plot_trajectory.py"


def build_parser() -> argparse.ArgumentParser:
    parser = cli_args.ArgumentParser(PROG, __doc__.split("\n\n")[0])
    g = parser.add_argument_group("checkpoints")
    g.add_argument("--model", default="resnet56",
                   help="zoo name, path/to/file.py:factory or pkg.module:factory")
    g.add_argument("--model_folder", default="", help="folder with the checkpoints (required)")
    g.add_argument("--prefix", default="model_", help="checkpoint file prefix")
    g.add_argument("--suffix", default=".t7", help="checkpoint file suffix")
    g.add_argument("--start_epoch", type=int, default=0, help="first epoch")
    g.add_argument("--max_epoch", type=int, default=300, help="last epoch: the final model, origin of the plane")
    g.add_argument("--save_epoch", type=int, default=1, help="epoch stride")
    g.add_argument("--num_classes", type=int, default=10, help="classes of the model's head (zoo models)")
    g.add_argument("--dataset", default="cifar10",
                   help="the data the model was trained on (used in the suggested plot_surface.py command)")
    g = parser.add_argument_group("directions and projection")
    g.add_argument("--dir_type", default="weights", choices=DIR_TYPES,
                   help="weights: parameters; states: state_dict entries incl. BatchNorm statistics")
    g.add_argument("--ignore", default="none", choices=cli_args.choices_with_empty(IGNORES),
                   help="biasbn: leave biases and BatchNorm out of the PCA; none (or ''): keep them, as the reference")
    g.add_argument("--dir_file", default="", help="project onto this existing direction file (no PCA)")
    g.add_argument("--proj_method", default="cos", choices=PROJ_METHODS,
                   help="cos: <d, dx>/|dx| (exact for orthogonal directions); lstsq: least squares")
    cli_args.add_output_args(parser)
    return parser


@cli_args.reports_usage_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.model_folder:
        raise UsageError("--model_folder is required: the folder holding the checkpoints "
                         "model_{epoch}.t7 of a training run")
    ignore = cli_args.norm_choice(args.ignore)
    epochs = projection.checkpoint_epochs(args.start_epoch, args.max_epoch, args.save_epoch)
    if args.dir_file:
        projection.check_two_directions(args.dir_file)  # before any checkpoint is read
    files = projection.find_checkpoints(args.model_folder, epochs, prefix=args.prefix, suffix=args.suffix)
    trajectory = projection.Trajectory(build_model(args.model, num_classes=args.num_classes), files, epochs)
    attrs = provenance(args, World(), {
        "model": args.model, "model_folder": args.model_folder, "prefix": args.prefix,
        "suffix": args.suffix, "start_epoch": args.start_epoch, "max_epoch": args.max_epoch,
        "save_epoch": args.save_epoch})
    dir_file = args.dir_file
    if not dir_file:
        dir_file = pca_dir_file(args.model_folder, dir_type=args.dir_type, ignore=ignore,
                                save_epoch=args.save_epoch)
        projection.setup_pca_directions(trajectory, dir_file=dir_file, dir_type=args.dir_type,
                                        ignore=ignore, attrs=attrs)
    proj, directions = projection.setup_projection(trajectory, dir_file=dir_file, dir_type=args.dir_type,
                                                   method=args.proj_method, attrs=attrs)
    figure = plotting.plot_trajectory(proj, pc_variance=plotting.pc_variance(directions.extras),
                                      fmt=args.format, dpi=args.dpi, show=args.show)
    print(f"trajectory figure: {figure}", flush=True)
    print("loss contours of this plane with the path on them:\n  "
          + surface_command(args, final_file=files[-1], dir_file=dir_file, proj=proj), flush=True)
    return 0


def surface_command(args: argparse.Namespace, *, final_file: str, dir_file: str, proj) -> str:
    """The plot_surface.py command for the contours of the plane, over the path and a margin."""
    parts = ["python", "plot_surface.py", "--model", args.model, "--model_file", final_file,
             "--dir_file", dir_file, "--dir_type", args.dir_type, "--proj_file", proj.path]
    if args.dataset != "cifar10":
        parts += ["--dataset", args.dataset]
    parts += [f"--x={grid_range(proj.xcoord)}", f"--y={grid_range(proj.ycoord)}", "--plot"]
    return shlex.join(parts)


def grid_range(values: np.ndarray, points: int = 21) -> str:
    """``min:max:num`` over ``values`` and 0 (the final model) with a 10 % margin on each side.

    The step is a readable number (see ``auto_range.readable_ceil``) of about 1/(points - 1) of
    the span, and both ends are whole multiples of it, so 0 is a grid point: the contours pass
    through the final model itself. The count is then about ``points``.
    """
    lo, hi = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    pad = 0.1 * (hi - lo) if hi > lo else 1.0
    step = readable_ceil((hi - lo + 2 * pad) / (points - 1))
    first, last = math.floor((lo - pad) / step), math.ceil((hi + pad) / step)
    return f"{first * step:.6g}:{last * step:.6g}:{last - first + 1}"
