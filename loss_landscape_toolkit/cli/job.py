"""Setting up a grid job from its flags: data, model, directions, the surface file and its resume check.

This is the command-line edge of plot_surface.py and plot_hessian_eigen.py: it reads the argparse
Namespace, turns paths into loaded objects once, and hands them to the library. Every step runs
on every rank inside ``world.agreed``, so one rank's bad input stops all ranks with one message.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import platform
import shlex
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .. import _naming, h5io
from .._devices import choose_device, set_threads
from .._imports import is_spec
from .._seeds import direction_seed
from .._version import __version__
from ..data import load_eval_data, load_pickled_loader
from ..directions import (
    AxisSpec,
    cosine_similarity,
    load_directions,
    make_directions,
    named_tensors,
    save_directions,
    tensors_of,
)
from ..errors import FileFormatError, ModelError, SilentExit, UsageError
from ..evaluation import check_model_fits, make_batches
from ..folding import fold_batchnorm, foldable_by_default
from ..models import list_models
from ..models.loading import build_model, load_model, state_fingerprint
from ..parallel.world import World, detect_world, env_rank
from ..surface import EvalSet, check_resumable_surface, same_model_on_all_ranks, settle_channels_last
from . import auto_range
from .args import GridRange, norm_choice, parse_range

# settings that change the numbers in a surface file: a resume must not mix them
RESUME_KEYS = ("dataset", "raw_data", "data_split", "split_idx", "loss_name", "dir_type",
               "trainloader", "testloader", "bf16", "target_key")


@dataclass
class Job:
    """Everything a rank needs to compute its share of a grid."""

    model: nn.Module
    evalsets: dict[str, EvalSet]
    dir_file: str
    directions: h5io.DirectionFile
    surf_file: str
    x: GridRange
    y: GridRange | None
    model_fingerprint: str
    shard: int | None = None  # this job's shard with --of N (from --rank or a SLURM job array)
    speed: str = ""  # the speed options chosen and why (start-up report)
    auto_range: dict = dataclasses.field(default_factory=dict)  # how auto ranges were found (file attribute)

    def coordinates(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self.x.coordinates(), None if self.y is None else self.y.coordinates()

    @property
    def npoints(self) -> int:
        return self.x.num * (1 if self.y is None else self.y.num)


def parse_args_and_world(parser: argparse.ArgumentParser,
                         argv: Sequence[str] | None) -> tuple[argparse.Namespace, World]:
    """Parse the command line and find the MPI world; errors are reported by rank 0 only."""
    try:
        args = parser.parse_args(argv)
        return args, detect_world(force_mpi=args.mpi)
    except UsageError:
        if env_rank() != 0:
            raise SilentExit() from None  # the same error is reported by rank 0
        raise


def prepare_job(args: argparse.Namespace, world: World) -> Job:
    """Set-up on every rank, each step agreed: one rank's bad input stops all ranks."""
    with world.agreed("checking the arguments and loading the data"):
        x = parse_range(args.x, "--x")
        y = None if args.y is None else parse_range(args.y, "--y")
        shard = check_run_mode(args)
        auto_range.check_rise(getattr(args, "auto_rise", None))
        if args.dir_file and not os.path.isfile(args.dir_file):
            raise FileFormatError(f"--dir_file {args.dir_file} does not exist")
        check_model_spec(args.model, [args.model_file, args.model_file2, args.model_file3])
        device, threads = configure_torch(args, world)
        if world.is_root:  # rank 0 alone may download missing data
            evalsets = load_evalsets(args, device=device)
    with world.agreed("loading the data and the model"):
        if not world.is_root:
            evalsets = load_evalsets(args, device=device, download=False)
        num_classes = evalsets["train"].num_classes
        model = load_seeded_model(args, num_classes=num_classes, model_file=args.model_file)
        check_model_on_data(args, model, evalsets)
        speed = choose_speed_options(args, model, evalsets, threads=threads)
        dir_file = direction_file_name(args, two_d=y is not None)
    model_fingerprint = same_model_on_all_ranks(world, model)
    created = False
    with world.agreed("writing the direction file"):
        if world.is_root and not os.path.exists(dir_file):
            with contextlib.suppress(h5io.AlreadyExists):  # a concurrent job made it first
                create_directions(args, model, dir_file, two_d=y is not None, world=world,
                                  num_classes=num_classes)
                created = True
    with world.agreed("reading the directions"):
        directions = load_directions(dir_file, model, dir_type=args.dir_type,
                                     ndirections=1 if y is None else 2)
        check_reused_directions(args, directions, model_fingerprint)
    model = model.to(device)
    x, y, auto = resolve_auto_ranges(args, world, model, evalsets, directions.directions, x, y)
    job = Job(model, evalsets, dir_file, directions, surface_file_name(args, dir_file, x, y), x, y,
              model_fingerprint, shard, speed, auto)
    with world.agreed("setting up the surface file"):
        if world.is_root:
            resumed = setup_surface_file(args, world, job)
            announce(args, world, job, created=created, resumed=resumed)
    if args.ngpu > 1:
        job.model = nn.DataParallel(model)
    return job


# --------------------------------------------------------------------------- automatic ranges
def resolve_auto_ranges(args: argparse.Namespace, world: World, model: nn.Module, evalsets: dict[str, EvalSet],
                        directions: Sequence[Sequence[Any]], x: GridRange,
                        y: GridRange | None) -> tuple[GridRange, GridRange | None, dict]:
    """Replace ``auto`` ranges by grids over the basin (see cli/auto_range.py): rank 0 probes the
    loss and every rank gets its result. Returns the two ranges and the ``auto_range`` attribute."""
    given = [("--x", args.x, x), ("--y", args.y, y)]
    axes = [(k, flag, text) for k, (flag, text, grid) in enumerate(given) if grid is not None and grid.auto]
    if not axes:
        return x, y, {}
    found = None
    with world.agreed("finding the automatic range"):
        if world.is_root:
            loss_along = auto_range.plane_loss(
                model, directions, evalsets, dir_type=args.dir_type, loss_name=args.loss_name,
                channels_last=bool(getattr(args, "channels_last", False)), bf16=getattr(args, "bf16", False),
                fold_bn=bool(getattr(args, "fold_bn", False)))
            found = auto_range.probe_ranges(loss_along, axes, rise=getattr(args, "auto_rise", None))
    centre, rise, probes = world.bcast(found)
    asked = {flag: grid for flag, _, grid in given}
    grids = {p.flag: p.grid(asked[p.flag].num) for p in probes}
    if world.is_root:
        lines = [f"automatic range: loss {centre:.4g} at the centre (1 evaluation); the basin ends where it "
                 f"reaches {centre + rise:.4g} (centre + rise {rise:.4g})"]
        for probe in probes:
            lines.append(auto_range.describe(probe, grids[probe.flag]))
            if grids[probe.flag].num != asked[probe.flag].num:
                lines.append(f"note: {probe.flag}={probe.asked} asks for an even number of points; using "
                             f"{grids[probe.flag].num} so that 0 is a grid point")
            lines += [f"note: {note}" for note in probe.notes]
        print("\n".join(lines), flush=True)
    record = auto_range.record(centre, rise, probes, list(grids.values()))
    return grids.get("--x", x), grids.get("--y", y), record


# --------------------------------------------------------------------------- checks
def check_run_mode(args: argparse.Namespace) -> int | None:
    """Check --rank/--of/--merge/--estimate; return this job's shard (a SLURM job array gives
    it when --rank is not), or None without --of or with --merge."""
    if args.of is None:
        if args.rank is not None or args.merge:
            raise UsageError("--rank and --merge need --of N (the number of shards)")
        return None
    if args.of < 1:
        raise UsageError(f"--of must be >= 1, got {args.of}")
    if args.merge and args.estimate:
        raise UsageError("--merge and --estimate do not go together")
    rank = args.rank
    if rank is None and not args.merge:
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        if task is None:
            raise UsageError("--of N needs --rank I (0 <= I < N), or a SLURM job array "
                             "(SLURM_ARRAY_TASK_ID) to take it from")
        rank = int(task) - int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0"))
    if rank is not None and not 0 <= rank < args.of:
        raise UsageError(f"--rank must be in 0..{args.of - 1} for --of {args.of}, got {rank}")
    return None if args.merge else rank


def check_model_spec(spec: str, model_files: Sequence[str]) -> None:
    """Fail fast, before loading data, on an unknown model name or a missing checkpoint."""
    if not is_spec(spec) and spec not in list_models():
        build_model(spec)  # raises ModelError with close matches
    for path in model_files:
        if path and not os.path.isfile(path):
            raise ModelError(f"checkpoint not found: {path}; check the path (relative to "
                             f"{os.getcwd()})")


def check_model_on_data(args: argparse.Namespace, model: nn.Module, evalsets: dict[str, EvalSet]) -> None:
    """Run the model on a few samples of each split before the grid (and before any file is
    written): a model that does not fit the data is refused with the shapes seen."""
    for split, evalset in evalsets.items():
        loader = args.trainloader if split == "train" else args.testloader
        data = f"--{split}loader {loader}" if loader else f"the {args.dataset} {split} data"
        targets = torch.cat([y for _, y in evalset.batches])
        check_model_fits(model, evalset.batches[0], num_classes=evalset.num_classes, loss_name=args.loss_name,
                         name=f"--model {args.model}", data=data, targets=targets)


# --------------------------------------------------------------------------- loading
def configure_torch(args: argparse.Namespace, world: World) -> tuple[torch.device, str]:
    """Threads and device of this rank; the threads chosen and why, for the start-up report."""
    ranks_on_node = world.hosts.count(world.hosts[world.rank]) if world.hosts else 1
    threads = set_threads(args.threads, ranks_on_node=ranks_on_node)
    if getattr(args, "points_per_forward", 1) < 1:
        raise UsageError(f"--points_per_forward must be >= 1, got {args.points_per_forward}")
    return choose_device(args.device, cuda=args.cuda, local_rank=world.local_rank, ngpu=args.ngpu), threads


def choose_speed_options(args: argparse.Namespace, model: nn.Module, evalsets: dict[str, EvalSet], *,
                         threads: str) -> str:
    """Settle the memory format (``args.channels_last``: on by default where it is faster and the
    model accepts it), converting the model and the batches to it; returns what was chosen and
    why, as the start-up report's line."""
    parts = [f"threads {threads}"]
    if hasattr(args, "channels_last"):  # the programs with speed options
        args.channels_last, why = settle_channels_last(args.channels_last, model, evalsets)
        parts.append(f"channels_last {'on' if args.channels_last else 'off'} ({why})")
        if args.fold_bn is False:
            parts.append("fold_bn off (given)")
        elif getattr(args, "points_per_forward", 1) > 1:
            args.fold_bn = False
            parts.append("fold_bn off (--points_per_forward)")
        elif args.fold_bn is None and not foldable_by_default(model):
            args.fold_bn = False
            parts.append("fold_bn off (a model of your own: --fold_bn folds it if its forward has no "
                         "Python side effects)")
        else:
            folded, why = fold_batchnorm(model)
            args.fold_bn = folded is not None
            parts.append(f"fold_bn {'on' if folded else 'off'} ({why})")
        parts.append(f"compile {'on' if args.compile else 'off'}")
    return "; ".join(parts)


def load_seeded_model(args: argparse.Namespace, *, num_classes: int, model_file: str) -> nn.Module:
    """Build the model (initialised from --seed, so a random init is the same on every rank and
    every rerun) and load ``model_file`` if given."""
    torch.manual_seed(args.seed)
    return load_model(args.model, model_file or None, num_classes=num_classes)


def load_evalsets(args: argparse.Namespace, *, device: torch.device,
                  download: bool = True) -> dict[str, EvalSet]:
    """Evaluation data of this rank (the training split, and the test split with --eval_test),
    cut into batches on ``device``."""
    if args.batch_size < 1:
        raise UsageError(f"--batch_size must be >= 1, got {args.batch_size}")
    eval_test = getattr(args, "eval_test", False)
    if args.testloader and not args.trainloader:
        raise UsageError("--testloader needs --trainloader (the surface is computed on the training data)")
    if args.trainloader and eval_test and not args.testloader:
        raise UsageError("--eval_test with --trainloader needs --testloader too")
    out = {}
    for split in ["train", "test"] if eval_test else ["train"]:
        pickled = args.trainloader if split == "train" else args.testloader
        if pickled:
            data = load_pickled_loader(pickled, target_key=args.target_key)
        else:
            part = dict(data_split=args.data_split, split_idx=args.split_idx) if split == "train" else {}
            data = load_eval_data(args.dataset, split=split, datapath=args.datapath, raw_data=args.raw_data,
                                  download=download, target_key=args.target_key, **part)
        batches = make_batches(data.x, data.y, args.batch_size, device=device,
                               channels_last=getattr(args, "channels_last", False))
        out[split] = EvalSet(batches, data.num_classes, data.description)
    return out


# --------------------------------------------------------------------------- files
def provenance(args: argparse.Namespace, world: World, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Attributes recording how a file was made (command, versions, settings)."""
    attrs = {
        "command": shlex.join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "cwd": os.getcwd(),
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "world_size": world.size,
        "toolkit_version": __version__,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__, "h5py": h5io.H5PY_VERSION},
        "settings": dict(sorted(vars(args).items())),
    }
    attrs.update(extra or {})
    return attrs


def direction_file_name(args: argparse.Namespace, *, two_d: bool) -> str:
    """``--dir_file``, or the reference's name next to the model file."""
    if args.dir_file:
        return args.dir_file
    return _naming.name_direction_file(
        model_file=args.model_file or _naming.random_init_base(args.model), dir_type=args.dir_type,
        xnorm=norm_choice(args.xnorm), xignore=norm_choice(args.xignore), model_file2=args.model_file2,
        two_d=two_d, ynorm=norm_choice(args.ynorm), yignore=norm_choice(args.yignore),
        model_file3=args.model_file3, same_dir=getattr(args, "same_dir", False), idx=args.idx,
        seed=args.seed)


def surface_file_name(args: argparse.Namespace, dir_file: str, x: GridRange, y: GridRange | None) -> str:
    """``--surf_file``, or the reference's name after the direction file's."""
    if args.surf_file:
        return args.surf_file
    return _naming.name_surface_file(
        dir_file=dir_file, x=x.as_tuple(), y=None if y is None else y.as_tuple(),
        raw_data=args.raw_data, data_split=args.data_split, split_idx=args.split_idx,
        dataset=args.dataset, loss_name=args.loss_name)


def create_directions(args: argparse.Namespace, net: nn.Module, dir_file: str, *, two_d: bool,
                      world: World, num_classes: int) -> None:
    """Make and save the directions (rank 0, when the file does not exist yet)."""
    def target(model_file: str) -> list[torch.Tensor] | None:
        if not model_file:
            return None
        other = load_seeded_model(args, num_classes=num_classes, model_file=model_file)
        return tensors_of(other, args.dir_type)

    x_target = target(args.model_file2)
    y_target = target(args.model_file3) if two_d else None
    check_distinct_targets(args, tensors_of(net, args.dir_type), x_target, y_target)
    x = AxisSpec(norm_choice(args.xnorm), norm_choice(args.xignore), x_target)
    y = None
    if two_d:
        y = AxisSpec(norm_choice(args.ynorm), norm_choice(args.yignore), y_target)
    same_dir = getattr(args, "same_dir", False) and not args.model_file3
    directions = make_directions(tensors_of(net, args.dir_type), x=x, y=y, same_dir=same_dir,
                                 seed=args.seed, idx=args.idx)
    attrs = provenance(args, world, {
        "dir_type": args.dir_type, "model": args.model, "model_file": args.model_file,
        "x_direction": x.describe(args.model_file2),
        "y_direction": "" if y is None else ("same as x" if same_dir else y.describe(args.model_file3)),
        "seed": args.seed, "idx": args.idx,
        "direction_seed": direction_seed(args.seed, args.idx),
        "model_fingerprint": state_fingerprint(net),
    })
    folder = os.path.dirname(dir_file)
    if folder and not os.path.isdir(folder):
        raise FileFormatError(f"cannot write the direction file {dir_file}: folder {folder} does not exist")
    save_directions(dir_file, directions, named=named_tensors(net, args.dir_type), attrs=attrs)


def check_distinct_targets(args: argparse.Namespace, centre: Sequence[torch.Tensor],
                           x_target: Sequence[torch.Tensor] | None, y_target: Sequence[torch.Tensor] | None) -> None:
    """Refuse --model_file2/3 holding the same weights as the centre (the direction to it would
    be zero: a flat plot), and --model_file3 holding those of --model_file2 (y would repeat x)."""
    centre_name = (f"--model_file {args.model_file}" if args.model_file
                   else f"the random initialisation of {args.model} (--seed {args.seed})")
    checks = [("--model_file2", args.model_file2, x_target, "--model_file", args.model_file, centre_name, centre),
              ("--model_file3", args.model_file3, y_target, "--model_file", args.model_file, centre_name, centre),
              ("--model_file3", args.model_file3, y_target, "--model_file2", args.model_file2,
               f"--model_file2 {args.model_file2}", x_target)]
    for flag, path, tensors, other_flag, other_path, other_name, other in checks:
        if tensors is None or other is None or not _same_tensors(tensors, other):
            continue
        same_file = bool(other_path) and os.path.samefile(path, other_path)
        what = f"is the same file as {other_flag}" if same_file else f"holds the same {args.dir_type} as {other_name}"
        why = ("the direction to it would be zero and the plot flat" if other is centre
               else "the y direction would repeat the x direction")
        raise ModelError(f"{flag} {path} {what}: {why}; pass the checkpoint of another epoch or run")


def _same_tensors(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> bool:
    """Whether two lists of tensors are equal, entry by entry."""
    return len(a) == len(b) and all(torch.equal(s.detach().cpu(), t.detach().cpu()) for s, t in zip(a, b))


def check_reused_directions(args: argparse.Namespace, dfile: h5io.DirectionFile,
                            model_fingerprint: str) -> None:
    """An automatically named direction file from an earlier run must belong to the same
    weights: normalized directions depend on them. (An explicit --dir_file is used as given.)"""
    made_for = dfile.attrs.get("model_fingerprint")
    if not args.dir_file and made_for and made_for != model_fingerprint:
        raise FileFormatError(
            f"{dfile.path} was made for other weights than those in "
            f"{args.model_file or 'this randomly initialised model'} (the checkpoint changed since); "
            f"move that file away to make new directions, or pass it as --dir_file to reuse it anyway")


def setup_surface_file(args: argparse.Namespace, world: World, job: Job) -> bool:
    """Create the surface file, or check that the existing one can be resumed. True if it existed.

    With --estimate a missing file is not created (nothing is written).
    """
    if os.path.exists(job.surf_file):
        check_resumable(args, job, h5io.read_surface_file(job.surf_file))
        return True
    if args.estimate:
        return False
    folder = os.path.dirname(job.surf_file)
    if folder and not os.path.isdir(folder):
        raise FileFormatError(f"cannot write the surface file {job.surf_file}: folder "
                              f"{folder} does not exist")
    try:
        create_surface_like(args, world, job, job.surf_file)
    except h5io.AlreadyExists:  # a concurrent job (e.g. another array task) made it first
        check_resumable(args, job, h5io.read_surface_file(job.surf_file))
        return True
    return False


def create_surface_like(args: argparse.Namespace, world: World, job: Job, path: str, *,
                        shard_points: np.ndarray | None = None, extra: dict | None = None) -> None:
    """An empty surface (or shard) file for this job's grid, with provenance attributes."""
    xcoords, ycoords = job.coordinates()
    attrs = provenance(args, world, {
        "dir_fingerprint": job.directions.fingerprint, "model_fingerprint": job.model_fingerprint,
        "model": args.model, "model_file": args.model_file,
        "grid_convention": "Z[iy, ix] = f(xcoordinates[ix], ycoordinates[iy])",
        **({"auto_range": job.auto_range} if job.auto_range else {}), **(extra or {})})
    h5io.create_surface_file(path, dir_file=job.dir_file, xcoordinates=xcoords,
                             ycoordinates=ycoords, attrs=attrs, shard_points=shard_points)


def check_resumable(args: argparse.Namespace, job: Job, surface: h5io.SurfaceFile) -> None:
    """Refuse to resume a surface (or shard) file made with another grid, directions, model or data."""
    xcoordinates, ycoordinates = job.coordinates()
    settings = {f"--{key}": getattr(args, key) for key in RESUME_KEYS if hasattr(args, key)}
    theirs = {f"--{key}": value for key, value in surface.attrs.get("settings", {}).items()}
    check_resumable_surface(surface, xcoordinates=xcoordinates, ycoordinates=ycoordinates,
                            dir_fingerprint=job.directions.fingerprint, dir_file=job.dir_file,
                            model_fingerprint=job.model_fingerprint, settings=settings,
                            recorded_settings=theirs,
                            fix="Pass another --surf_file, or move that file away")


# --------------------------------------------------------------------------- reporting
def announce(args: argparse.Namespace, world: World, job: Job, *, created: bool, resumed: bool) -> None:
    """What this run is about to do, and where its files are (rank 0, before computing)."""
    if not args.model_file:
        print(f"note: no --model_file: {args.model} is randomly initialised, so this is the "
              f"landscape of an untrained network", flush=True)
    grid = f"{job.x.num} points" if job.y is None else f"{job.x.num} x {job.y.num} = {job.npoints} points"
    data = "; ".join(e.description for e in job.evalsets.values())
    surface_state = "resuming" if resumed else ("not created by --estimate" if args.estimate else "created")
    lines = [
        f"model: {args.model}" + (f" from {args.model_file}" if args.model_file else " (random init)"),
        f"data: {data}; batch size {args.batch_size}; {world.size} process(es)",
        f"speed: {job.speed}",
        f"direction file: {job.dir_file} ({'created' if created else 'reused'})",
        f"surface file: {job.surf_file} ({surface_state})",
        f"grid: {grid}",
    ]
    if len(job.directions.directions) == 2:
        lines.append(f"cosine similarity between x-axis and y-axis: "
                     f"{cosine_similarity(*job.directions.directions):f}")
    print("\n".join(lines), flush=True)
