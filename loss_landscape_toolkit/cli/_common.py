"""Command-line pieces shared by plot_surface.py and plot_hessian_eigen.py.

The flags, their names, aliases and defaults are the reference code's (REFERENCE.md section 2),
with the fixes of DESIGN.md section 2. This module is the edge: it reads the argparse
Namespace and calls the library (net_plotter, surface, h5_util, ...) with explicit arguments.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .. import h5io as h5_util
from .. import directions as net_plotter
from ..errors import ArgumentParser, FileFormatError, ModelError, RangeError, UsageError  # noqa: F401 - re-exported
from ..evaluation import LOSSES, make_batches
from ..parallel.world import World
from ..surface import EvalSet

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_DATAPATH = os.path.join("cifar10", "data")
from .._version import __version__ as TOOLKIT_VERSION


# --------------------------------------------------------------------------- ranges
@dataclass(frozen=True)
class GridRange:
    """``min:max:num`` of one axis."""

    vmin: float
    vmax: float
    num: int

    def coordinates(self) -> np.ndarray:
        return np.linspace(self.vmin, self.vmax, self.num)

    def as_tuple(self) -> tuple[float, float, int]:
        return (self.vmin, self.vmax, self.num)


def parse_range(text: str | None, flag: str) -> GridRange:
    """Parse ``min:max:num`` (e.g. ``-1:1:51``). ``num`` may be written ``51.0`` (old scripts).

    Raises:
        RangeError: anything else, with the expected form.
    """
    example = f"{flag}=-1:1:51"
    if text is None or not text.strip():
        raise RangeError(f"{flag} is empty; expected min:max:num, e.g. {example}")
    parts = text.split(":")
    if len(parts) != 3:
        raise RangeError(f"{flag}={text} has {len(parts)} field(s); expected min:max:num, e.g. {example}")
    try:
        vmin, vmax, num_f = (float(p) for p in parts)
    except ValueError:
        raise RangeError(f"{flag}={text} is not three numbers min:max:num, e.g. {example}") from None
    if not all(math.isfinite(v) for v in (vmin, vmax, num_f)):
        raise RangeError(f"{flag}={text}: values must be finite numbers, e.g. {example}")
    if num_f != int(num_f) or num_f < 1:
        raise RangeError(f"{flag}={text}: the number of points must be a whole number >= 1, e.g. {example}")
    num = int(num_f)
    if num > 1 and not vmin < vmax:
        raise RangeError(f"{flag}={text}: min must be smaller than max, e.g. {example}")
    if num == 1 and vmin != vmax:
        raise RangeError(f"{flag}={text}: one point needs min == max (e.g. {flag}=0:0:1)")
    return GridRange(vmin, vmax, num)


# --------------------------------------------------------------------------- flags
def choices_with_empty(values: Sequence[str]) -> list[str]:
    return list(values) + [""]  # '' is the reference's spelling of "none"


def add_parallel_args(parser: argparse.ArgumentParser, *, speed: bool = True) -> None:
    g = parser.add_argument_group("parallel and devices")
    g.add_argument("--mpi", "-m", action="store_true",
                   help="use MPI (detected automatically under mpirun/mpiexec/srun)")
    g.add_argument("--cuda", "-c", action="store_true",
                   help="evaluate on GPU: rank r uses GPU (node-local rank) %% (visible GPUs)")
    g.add_argument("--device", default=None,
                   help="explicit torch device, e.g. cpu, cuda, cuda:1 (default: cpu, or cuda with --cuda)")
    g.add_argument("--ngpu", type=int, default=1,
                   help="if > 1, wrap the model in DataParallel over all visible GPUs")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads per process for torch (default: torch's own choice)")
    if not speed:
        return
    g.add_argument("--channels_last", action="store_true",
                   help="NHWC memory format for model and data (faster convolutions on many CPUs/GPUs)")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the model (one-time compile cost per process; see README)")
    g.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast in the forward pass (GPUs; about 3 significant digits)")
    g.add_argument("--points_per_forward", type=int, default=1,
                   help="grid points evaluated together in one vmapped forward pass (weights directions)")


def add_data_args(parser: argparse.ArgumentParser, *, test: bool = True) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--batch_size", type=int, default=128, help="evaluation batch size")
    g.add_argument("--dataset", default="cifar10",
                   help="cifar10 | digits | path/to/file.py:function | pkg.module:function")
    g.add_argument("--datapath", default=DEFAULT_DATAPATH,
                   help="CIFAR-10 folder (default cifar10/data inside the project)")
    g.add_argument("--raw_data", action="store_true", help="no normalization of CIFAR-10 images")
    g.add_argument("--data_split", type=int, default=1,
                   help="evaluate on one of this many disjoint random parts of the training set")
    g.add_argument("--split_idx", type=int, default=0, help="which part (0-based) with --data_split")
    g.add_argument("--trainloader", default="", help="pickled DataLoader for training data (trusted files only)")
    g.add_argument("--testloader", default="", help="pickled DataLoader for test data (trusted files only)")
    if test:
        g.add_argument("--eval_test", action="store_true",
                       help="also compute test_loss/test_acc on the test set in the same run")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--model", default="resnet56",
                   help="zoo name (see README), path/to/file.py:factory or pkg.module:factory")
    g.add_argument("--model_folder", default="", help="accepted for compatibility; unused")
    g.add_argument("--model_file", default="", help="checkpoint of the centre model")
    g.add_argument("--model_file2", default="", help="x direction = model_file2 - model_file")
    g.add_argument("--model_file3", default="", help="y direction = model_file3 - model_file")
    g.add_argument("--loss_name", "-l", default="crossentropy", choices=LOSSES)


def add_direction_args(parser: argparse.ArgumentParser, *, same_dir: bool = True) -> None:
    g = parser.add_argument_group("directions and grid")
    g.add_argument("--dir_file", default="", help="use this existing direction file")
    g.add_argument("--dir_type", default="weights", choices=net_plotter.DIR_TYPES,
                   help="weights: parameters only; states: state_dict incl. BatchNorm statistics")
    g.add_argument("--x", default="-1:1:51", help="xmin:xmax:xnum (write --x=-1:1:51)")
    g.add_argument("--y", default=None, help="ymin:ymax:ynum; gives a 2D surface")
    norms, ignores = choices_with_empty(net_plotter.NORMS), choices_with_empty(net_plotter.IGNORES)
    g.add_argument("--xnorm", default="filter", choices=norms, help="normalization of x (default filter)")
    g.add_argument("--ynorm", default="filter", choices=norms, help="normalization of y (default filter)")
    g.add_argument("--xignore", default="biasbn", choices=ignores,
                   help="biasbn: no movement of biases and BatchNorm (default); none: move them too")
    g.add_argument("--yignore", default="biasbn", choices=ignores)
    if same_dir:
        g.add_argument("--same_dir", action="store_true", help="y direction = x direction")
    g.add_argument("--idx", type=int, default=0, help="repeat index: new random directions for each N > 0")
    g.add_argument("--seed", type=int, default=123, help="seed of the random directions (and of the model's init without --model_file)")
    g.add_argument("--surf_file", default="", help="surface file name (default: named like the reference)")


def add_run_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("run")
    g.add_argument("--flush_secs", type=float, default=5.0,
                   help="write results to the surface file at most this often (seconds)")
    g.add_argument("--no_progress", action="store_true", help="no progress bar")
    g.add_argument("--estimate", action="store_true",
                   help="time a few points, print the expected wall time for the number of ranks, exit")
    g.add_argument("--rank", type=int, default=None,
                   help="with --of N: compute shard I (0-based) of the remaining points into a file of "
                        "its own (default under a SLURM job array: the array task id)")
    g.add_argument("--of", type=int, default=None, help="number of shards (jobs without MPI)")
    g.add_argument("--merge", action="store_true", help="with --of N: merge the shard files into the surface file")


def parse_args_and_world(parser: argparse.ArgumentParser,
                         argv: Sequence[str] | None) -> tuple[argparse.Namespace, World]:
    """Parse the command line and find the MPI world; errors are reported by rank 0 only."""
    from ..errors import SilentExit
    from ..parallel.world import detect_world, env_rank

    try:
        args = parser.parse_args(argv)
        return args, detect_world(force_mpi=args.mpi)
    except UsageError:
        if env_rank() != 0:
            raise SilentExit() from None  # the same error is reported by rank 0
        raise


def norm_choice(value: str) -> str:
    return value or "none"


# --------------------------------------------------------------------------- set-up steps
def configure_torch(args: argparse.Namespace, world: World) -> torch.device:
    """Threads and device of this rank."""
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if getattr(args, "points_per_forward", 1) < 1:
        raise UsageError(f"--points_per_forward must be >= 1, got {args.points_per_forward}")
    spec = args.device or ("cuda" if args.cuda else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"--device {spec!r} is not a torch device; try cpu, cuda or cuda:1") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--cuda/--device cuda asked for a GPU but torch sees none "
                             "(check CUDA_VISIBLE_DEVICES and the driver), or run without --cuda")
        if device.index is None:
            device = torch.device("cuda", world.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def check_model_spec(spec: str, model_files: Sequence[str]) -> None:
    """Fail fast, before loading data, on an unknown model name or a missing checkpoint."""
    from ..models import list_models

    if ":" not in spec and spec not in list_models():
        from ..models import loading as model_loader

        model_loader.build_model(spec)  # raises ModelError with close matches
    for path in model_files:
        if path and not os.path.isfile(path):
            raise ModelError(f"checkpoint not found: {path}; check the path (relative to "
                             f"{os.getcwd()})")


def load_model(args: argparse.Namespace, *, num_classes: int, model_file: str) -> nn.Module:
    """Build the model (initialised from --seed, so a random init is the same on every rank and
    every rerun) and load ``model_file`` if given."""
    from ..models import loading as model_loader

    torch.manual_seed(args.seed)
    return model_loader.load_model(args.model, model_file or None, num_classes=num_classes)


def load_evalsets(args: argparse.Namespace, *, device: torch.device,
                  download: bool = True) -> dict[str, EvalSet]:
    """Evaluation data of this rank, cut into batches on ``device``."""
    from .. import data as dataloader

    if args.batch_size < 1:
        raise UsageError(f"--batch_size must be >= 1, got {args.batch_size}")
    datapath = args.datapath
    if datapath == DEFAULT_DATAPATH:
        datapath = os.path.join(PROJECT_DIR, DEFAULT_DATAPATH)
    common = dict(datapath=datapath, raw_data=args.raw_data, download=download)
    out = {}
    for split in ["train", "test"] if getattr(args, "eval_test", False) else ["train"]:
        pickled = args.trainloader if split == "train" else args.testloader
        if args.trainloader and args.testloader:
            data = dataloader.load_pickled_loader(pickled)
        elif split == "train":
            data = dataloader.load_eval_data(args.dataset, split="train", data_split=args.data_split,
                                             split_idx=args.split_idx, **common)
        else:
            data = dataloader.load_eval_data(args.dataset, split="test", **common)
        batches = make_batches(data.x, data.y, args.batch_size, device=device,
                               channels_last=getattr(args, "channels_last", False))
        out[split] = EvalSet(batches, data.num_classes, data.description)
    return out


def provenance(args: argparse.Namespace, world: World, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Attributes recording how a file was made (command, versions, settings)."""
    attrs = {
        "command": shlex.join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "cwd": os.getcwd(),
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "world_size": world.size,
        "toolkit_version": TOOLKIT_VERSION,
        "versions": json.dumps({"python": platform.python_version(), "torch": torch.__version__,
                                "numpy": np.__version__, "h5py": h5_util.H5PY_VERSION}),
        "settings": json.dumps({k: v for k, v in sorted(vars(args).items())}),
    }
    attrs.update(extra or {})
    return attrs


def direction_file_name(args: argparse.Namespace, *, two_d: bool) -> str:
    """``--dir_file``, or the reference's name next to the model file."""
    if args.dir_file:
        return args.dir_file
    base = args.model_file or _random_init_base(args.model)
    name = net_plotter.name_direction_file(
        model_file=base, dir_type=args.dir_type, xnorm=norm_choice(args.xnorm),
        xignore=norm_choice(args.xignore), model_file2=args.model_file2, two_d=two_d,
        ynorm=norm_choice(args.ynorm), yignore=norm_choice(args.yignore),
        model_file3=args.model_file3, same_dir=getattr(args, "same_dir", False), idx=args.idx)
    if args.seed != 123:
        name = name[: -len(".h5")] + f"_seed={args.seed}.h5"
    return name


def _random_init_base(model: str) -> str:
    tag = os.path.basename(model.replace(":", "-"))
    return tag + "_random_init"


def surface_file_name(args: argparse.Namespace, dir_file: str, x: GridRange, y: GridRange | None) -> str:
    if args.surf_file:
        return args.surf_file
    return net_plotter.name_surface_file(
        dir_file=dir_file, x=x.as_tuple(), y=None if y is None else y.as_tuple(),
        raw_data=args.raw_data, data_split=args.data_split, split_idx=args.split_idx,
        dataset=args.dataset, loss_name=args.loss_name)


def create_directions(args: argparse.Namespace, net: nn.Module, dir_file: str, *, two_d: bool,
                      world: World, num_classes: int) -> None:
    """Make and save the directions (rank 0, when the file does not exist yet)."""
    from ..models import loading as model_loader

    weights = net_plotter.tensors_of(net, args.dir_type)

    def target(model_file: str) -> list[torch.Tensor] | None:
        if not model_file:
            return None
        other = load_model(args, num_classes=num_classes, model_file=model_file)
        return net_plotter.tensors_of(other, args.dir_type)

    x = net_plotter.AxisSpec(norm_choice(args.xnorm), norm_choice(args.xignore), target(args.model_file2))
    y = None
    if two_d:
        y = net_plotter.AxisSpec(norm_choice(args.ynorm), norm_choice(args.yignore), target(args.model_file3))
    same_dir = getattr(args, "same_dir", False) and not args.model_file3
    directions = net_plotter.make_directions(weights, x=x, y=y, same_dir=same_dir, seed=args.seed, idx=args.idx)
    attrs = provenance(args, world, {
        "dir_type": args.dir_type, "model": args.model, "model_file": args.model_file,
        "x_direction": x.describe(args.model_file2),
        "y_direction": "" if y is None else ("same as x" if same_dir else y.describe(args.model_file3)),
        "seed": args.seed, "idx": args.idx,
        "direction_seed": net_plotter.direction_seed(args.seed, args.idx),
        "model_fingerprint": model_loader.state_fingerprint(net),
    })
    folder = os.path.dirname(dir_file)
    if folder and not os.path.isdir(folder):
        raise FileFormatError(f"cannot write the direction file {dir_file}: folder {folder} does not exist")
    net_plotter.save_directions(dir_file, directions, named=net_plotter.named_tensors(net, args.dir_type),
                                attrs=attrs)


def check_reused_directions(args: argparse.Namespace, dfile: h5_util.DirectionFile,
                            model_fingerprint: str) -> None:
    """An automatically named direction file from an earlier run must belong to the same
    weights: normalized directions depend on them. (An explicit --dir_file is used as given.)"""
    made_for = dfile.attrs.get("model_fingerprint")
    if not args.dir_file and made_for and made_for != model_fingerprint:
        raise FileFormatError(
            f"{dfile.path} was made for other weights than those in "
            f"{args.model_file or 'this randomly initialised model'} (the checkpoint changed since); "
            f"move that file away to make new directions, or pass it as --dir_file to reuse it anyway")


def check_resumable(surface: h5_util.SurfaceFile, *, xcoordinates: np.ndarray,
                    ycoordinates: np.ndarray | None, dir_file: str, dir_fingerprint: str,
                    model_fingerprint: str, settings: dict[str, Any]) -> None:
    """Refuse to resume a surface file made with another grid, directions, model or data."""
    path = surface.path

    def refuse(what: str) -> FileFormatError:
        return FileFormatError(f"{path} was made with {what}; it cannot be resumed by this "
                               f"command. Pass another --surf_file, or move that file away")

    if (ycoordinates is None) != (surface.ycoordinates is None):
        raise refuse("a 1D grid" if surface.ycoordinates is None else "a 2D grid")
    for axis, mine, theirs in (("x", xcoordinates, surface.xcoordinates),
                               ("y", ycoordinates, surface.ycoordinates)):
        if mine is not None and (len(mine) != len(theirs) or not np.allclose(mine, theirs, rtol=0, atol=1e-9)):
            raise refuse(f"other {axis} coordinates ({theirs[0]:g}..{theirs[-1]:g}, {len(theirs)} points)")
    if "dir_fingerprint" in surface.attrs:
        if surface.attrs["dir_fingerprint"] != dir_fingerprint:
            raise refuse(f"other directions (direction file {surface.dir_file})")
    elif surface.dir_file and os.path.basename(surface.dir_file) != os.path.basename(dir_file):
        raise refuse(f"the direction file {surface.dir_file}")
    theirs_model = surface.attrs.get("model_fingerprint")
    if theirs_model and theirs_model != model_fingerprint:
        raise refuse("another centre model (its weights differ from --model_file's)")
    theirs_settings = json.loads(surface.attrs.get("settings", "{}"))
    for key, value in settings.items():
        if key in theirs_settings and theirs_settings[key] != value:
            raise refuse(f"--{key} {theirs_settings[key]!r} (now {value!r})")


# settings that change the numbers in a surface file: a resume must not mix them
RESUME_KEYS = ("dataset", "raw_data", "data_split", "split_idx", "loss_name", "dir_type",
               "trainloader", "testloader", "bf16")
