"""Loss surfaces: evaluate loss and accuracy on a 1D or 2D grid of points in weight space.

:func:`compute_surface` is the entry point from Python (a notebook, a training script); the
``plot_surface.py`` command line runs the same machinery with files named like the reference
code's. Example::

    import numpy as np
    from loss_landscape_toolkit.models import create_model
    from loss_landscape_toolkit.surface import compute_surface

    net = create_model("resnet20")            # or your own nn.Module, trained
    surf = compute_surface(net, (images, labels),            # tensors, a Dataset or EvalData
                           x=np.linspace(-1, 1, 21), y=np.linspace(-1, 1, 21))
    surf.values["train_loss"]                 # (21, 21): Z[iy, ix] = loss at (x[ix], y[iy])
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from . import h5io
from ._seeds import direction_seed
from .data._common import _collect_batches, _num_classes
from .directions import PlaneSetter, create_random_direction, tensors_of
from .errors import FileFormatError, UsageError
from .evaluation import (
    Batches,
    batches_to_channels_last,
    evaluate,
    evaluate_many,
    make_batches,
    prepare_model,
    resolve_channels_last,
)
from .folding import fold_batchnorm, foldable_by_default
from .h5io import TEST, TEST_LOSS, TRAIN, TRAIN_LOSS, MetricGroup
from .models.loading import state_fingerprint
from .objective import Loss, get_loss, logits_of
from .parallel.grid import GridStats, PointFn, PointsFn, Poll, per_point, run_grid
from .parallel.scheduler import WorkItem, point_coordinates
from .parallel.world import World

GROUPS = {"train": TRAIN, "test": TEST}  # loss and accuracy
LOSS_ONLY_GROUPS = {"train": TRAIN_LOSS, "test": TEST_LOSS}  # losses without accuracy


@dataclass(frozen=True)
class EvalSet:
    """Evaluation data of one split, already cut into batches on the evaluation device."""

    batches: Batches
    num_classes: int
    description: str = ""

    def group(self, split: str, loss: str | Loss) -> MetricGroup:
        """The arrays this split fills for ``loss``: ``{split}_loss`` and, for losses with an
        accuracy on these targets, ``{split}_acc``."""
        with_accuracy = get_loss(loss).has_accuracy(self.batches[0][1])
        return (GROUPS if with_accuracy else LOSS_ONLY_GROUPS)[split]


def surface_groups(evalsets: Mapping[str, EvalSet], loss: str | Loss) -> list[MetricGroup]:
    """The metric groups a surface of ``evalsets`` fills, train first."""
    return [evalset.group(split, loss) for split, evalset in evalsets.items()]


@dataclass
class Surface:
    """A computed surface. 2D arrays are ``(ny, nx)``: ``values[k][iy, ix]`` is at
    ``(xcoordinates[ix], ycoordinates[iy])``."""

    xcoordinates: np.ndarray
    ycoordinates: np.ndarray | None
    values: dict[str, np.ndarray]
    path: str | None = None
    stats: GridStats | None = None


def same_model_on_all_ranks(world: World, model: nn.Module) -> str:
    """Make sure every rank evaluates the same weights; returns their fingerprint.

    Ranks that built a model with another random initialisation (or loaded other weights)
    receive rank 0's state_dict. A collective: every rank must call it.
    """
    fingerprint = state_fingerprint(model)
    fingerprints = world.allgather(fingerprint)
    if len(set(fingerprints)) > 1:
        state = world.bcast({k: v.cpu() for k, v in model.state_dict().items()} if world.is_root else None)
        model.load_state_dict(state)
        if world.is_root:
            print("note: the ranks had built different weights; all now use rank 0's", flush=True)
    return fingerprints[0]


def settle_channels_last(choice: bool | None, model: nn.Module,
                         evalsets: dict[str, EvalSet]) -> tuple[bool, str]:
    """Choose the memory format (see :func:`evaluation.resolve_channels_last`) and store the
    batches of ``evalsets`` (in place) in it; returns the choice and why."""
    chosen, why = resolve_channels_last(choice, model, evalsets["train"].batches[0][0])
    if chosen:
        for split, evalset in evalsets.items():
            evalsets[split] = dataclasses.replace(evalset, batches=batches_to_channels_last(evalset.batches))
    return chosen, why


def check_resumable_surface(surface: h5io.SurfaceFile, *, xcoordinates: np.ndarray,
                            ycoordinates: np.ndarray | None, dir_fingerprint: str, model_fingerprint: str,
                            settings: Mapping[str, Any], recorded_settings: Mapping[str, Any] | None = None,
                            dir_file: str = "", fix: str = "") -> None:
    """Refuse to resume a surface (or shard) file made with another grid, directions, centre
    model or settings: its points would be mixed with ours. What the file does not record
    (a reference-code file has no fingerprints) is not checked.

    Args:
        settings: this run's values of the settings that change the numbers (data, loss, ...).
        recorded_settings: the file's values under the same names (default: its "settings").
        fix: what to tell the user to do instead, ending the message.

    Raises:
        FileFormatError: naming the first difference found.
    """
    def refuse(what: str) -> FileFormatError:
        return FileFormatError(f"{surface.path} was made with {what}; it cannot be resumed by this "
                               f"run" + (f". {fix}" if fix else ""))

    if (ycoordinates is None) != (surface.ycoordinates is None):
        raise refuse("a 1D grid" if surface.ycoordinates is None else "a 2D grid")
    for axis, mine, theirs in (("x", xcoordinates, surface.xcoordinates),
                               ("y", ycoordinates, surface.ycoordinates)):
        if mine is not None and (len(mine) != len(theirs) or not np.allclose(mine, theirs, rtol=0, atol=1e-9)):
            raise refuse(f"other {axis} coordinates ({theirs[0]:g}..{theirs[-1]:g}, {len(theirs)} points)")
    theirs_model = surface.attrs.get("model_fingerprint")
    if theirs_model and theirs_model != model_fingerprint:
        raise refuse("another centre model (other weights)")
    if "dir_fingerprint" in surface.attrs:
        if surface.attrs["dir_fingerprint"] != dir_fingerprint:
            raise refuse("other directions" + (f" (direction file {surface.dir_file})" if surface.dir_file else ""))
    elif surface.dir_file and dir_file and os.path.basename(surface.dir_file) != os.path.basename(dir_file):
        raise refuse(f"the direction file {surface.dir_file}")
    recorded = surface.attrs.get("settings", {}) if recorded_settings is None else recorded_settings
    for key, value in settings.items():
        if key in recorded and recorded[key] != value:
            raise refuse(f"{key} {recorded[key]!r} (now {value!r})")


def point_evaluator(model: nn.Module, setter: PlaneSetter, xcoordinates: np.ndarray,
                    ycoordinates: np.ndarray | None, evalsets: Mapping[str, EvalSet], *,
                    loss_name: str | Loss, bf16: bool = False,
                    after_move: Callable[[], None] | None = None) -> PointFn:
    """The work of one grid point: move the model there (then call ``after_move``), then
    evaluate each requested split."""
    loss_fn = get_loss(loss_name)

    def evaluate_point(index: int, needs: tuple[str, ...], poll: Poll) -> dict[str, float]:
        setter.set(point_coordinates(index, xcoordinates, ycoordinates))
        if after_move is not None:
            after_move()
        values = {}
        for name in needs:
            data = evalsets[name]
            loss, acc = evaluate(model, data.batches, loss_name=loss_fn,
                                 num_classes=data.num_classes, poll=poll, bf16=bf16)
            values[f"{name}_loss"] = loss
            if acc is not None:
                values[f"{name}_acc"] = acc
        return values

    return evaluate_point


def vmap_evaluator(model: nn.Module, directions: Sequence[Sequence[Any]], xcoordinates: np.ndarray,
                   ycoordinates: np.ndarray | None, evalsets: Mapping[str, EvalSet], *,
                   loss_name: str | Loss, bf16: bool = False) -> PointsFn:
    """Several grid points per forward pass: the parameter sets of all points of a chunk are
    stacked and the model runs once per batch under ``torch.func.vmap`` (``weights`` directions
    only: BatchNorm statistics are shared by all points). Weights are formed in float32."""
    names = [name for name, _ in model.named_parameters()]
    origin = [p.detach() for p in model.parameters()]
    dirs = [[torch.as_tensor(np.asarray(d)).to(o) for d, o in zip(direction, origin)]
            for direction in directions]
    buffers = dict(model.named_buffers())
    loss_fn = get_loss(loss_name)

    def one_point(p: dict[str, torch.Tensor], x: Any) -> torch.Tensor:
        args, kwargs = ((), dict(x)) if isinstance(x, Mapping) else ((x,), {})
        return logits_of(torch.func.functional_call(model, (p, buffers), args, kwargs))

    def evaluate_points(items: Sequence[WorkItem], poll: Poll) -> list[dict[str, float]]:
        coords = torch.tensor([point_coordinates(i, xcoordinates, ycoordinates) for i, _ in items],
                              dtype=origin[0].dtype, device=origin[0].device)  # (K, ndirections)
        params = {}
        for j, (name, o) in enumerate(zip(names, origin)):
            shape = (-1,) + (1,) * o.dim()
            params[name] = o.unsqueeze(0) + sum(coords[:, k].view(shape) * d[j].unsqueeze(0)
                                                for k, d in enumerate(dirs))
        forward = torch.func.vmap(one_point, in_dims=(0, None))
        values: list[dict[str, float]] = [{} for _ in items]
        for name in sorted({n for _, needs in items for n in needs}):
            data = evalsets[name]
            losses, accs = evaluate_many(lambda x: forward(params, x), data.batches, loss_name=loss_fn,
                                         num_classes=data.num_classes, poll=poll, bf16=bf16)
            for k, (v, (_, needs), loss) in enumerate(zip(values, items, losses)):
                if name in needs:
                    v[f"{name}_loss"] = loss
                    if accs is not None:
                        v[f"{name}_acc"] = accs[k]
        return values

    return evaluate_points


@contextlib.contextmanager
def surface_task(*, model: nn.Module, directions: Sequence[Sequence[Any]], dir_type: str,
                 xcoordinates: np.ndarray, ycoordinates: np.ndarray | None,
                 evalsets: Mapping[str, EvalSet], loss_name: str | Loss, channels_last: bool = False,
                 compile: bool = False, bf16: bool = False, fold_bn: bool = False,
                 points_per_forward: int = 1) -> Iterator[PointsFn]:
    """The work function of a loss surface (for chunks of ``points_per_forward`` points); the
    model is put back at the centre after.

    ``channels_last``/``compile``: see :func:`evaluation.prepare_model` (the evaluation
    batches must have been made with the same ``channels_last``). ``bf16``: bfloat16 autocast.
    ``fold_bn``: evaluate a copy with BatchNorm folded into the convolutions, refreshed at every
    point (:mod:`folding`; where the model has no such pairs, the model itself).
    ``points_per_forward`` > 1: :func:`vmap_evaluator` (``weights`` directions only).
    """
    model.eval()
    prepare_model(model, channels_last=channels_last)
    folded = fold_batchnorm(model)[0] if fold_bn and points_per_forward == 1 else None
    forward = prepare_model(model if folded is None else folded.module, compile=compile)
    if points_per_forward > 1:
        if dir_type != "weights":
            raise UsageError("--points_per_forward > 1 needs --dir_type weights (BatchNorm statistics "
                             "cannot differ between the points of one forward pass)")
        yield vmap_evaluator(model, directions, xcoordinates, ycoordinates, evalsets,
                             loss_name=loss_name, bf16=bf16)
        return
    setter = PlaneSetter(model, directions, dir_type=dir_type)
    try:
        yield per_point(point_evaluator(forward, setter, xcoordinates, ycoordinates, evalsets,
                                        loss_name=loss_name, bf16=bf16,
                                        after_move=None if folded is None else folded.refresh))
    finally:
        setter.restore()


def run_surface(*, world: World, surf_file: str, evalsets: Mapping[str, EvalSet],
                flush_secs: float = 5.0, progress: bool = True, **task: Any) -> GridStats:
    """Fill the missing train (and test) points of an existing surface file, on all ranks.

    ``task``: the keyword arguments of :func:`surface_task` other than ``evalsets``.
    """
    with surface_task(evalsets=evalsets, **task) as evaluate_points:
        return run_grid(world=world, surf_file=surf_file, groups=surface_groups(evalsets, task["loss_name"]),
                        evaluate_points=evaluate_points, chunk=task.get("points_per_forward", 1),
                        flush_secs=flush_secs, progress=progress, desc="loss surface")


def compute_surface(model: nn.Module, data: Any, *, x: Sequence[float], y: Sequence[float] | None = None,
                    test_data: Any = None, directions: Sequence[Sequence[torch.Tensor]] | None = None,
                    dir_type: str = "weights", norm: str = "filter", ignore: str = "biasbn",
                    seed: int = 123, loss_name: str | Loss | Callable[..., Any] = "crossentropy",
                    num_classes: int | None = None, target_key: str = "labels",
                    batch_size: int = 128, device: str | torch.device | None = None,
                    surf_file: str | None = None, world: World | None = None,
                    progress: bool = False, channels_last: bool | None = None,
                    compile: bool = False, bf16: bool = False, fold_bn: bool | None = None,
                    points_per_forward: int = 1) -> Surface:
    """Evaluate loss and accuracy of ``model`` on the grid ``x`` (times ``y``) around it.

    Args:
        model: the centre of the plot (theta*); it is moved during the run and put back after.
        data: evaluation data: ``(inputs, targets)`` tensors (inputs may be a dict of tensors,
            the model's keyword arguments), a torch Dataset of such pairs or of dicts of
            tensors (``target_key`` is the target), or a ``data.EvalData``. It is moved to
            ``device`` once and used as given (no normalization is added). Integer targets
            are class indices (-100: skipped), floating targets real values.
        x, y: coordinates along the first (and second) direction; ``y=None`` gives a 1D curve.
        test_data: optional second dataset, giving ``test_loss``/``test_acc`` too.
        directions: ``[x_direction]`` or ``[x_direction, y_direction]``, each one tensor per
            parameter (``weights``) or state entry (``states``). By default random Gaussian
            directions normalized by ``norm`` and ``ignore`` (the paper's filter
            normalization), drawn from ``seed``; y uses the stream after x, like the CLI.
        dir_type, norm, ignore, seed: as the ``plot_surface.py`` flags of the same names.
        loss_name: ``crossentropy``, ``mse`` (regression on real-valued targets; the
            reference's ``softmax_mse`` on class labels), ``softmax_mse``, a spec
            ``path/file.py:fn`` or a callable ``fn(outputs, targets)`` returning per-item
            losses or a ``(sum, count)`` pair (see :mod:`objective`).
        num_classes: for ``softmax_mse``; by default 1 + the largest label.
        target_key: the target's key in dict items of a Dataset.
        batch_size: evaluation batch size (it does not change the results).
        device: where to evaluate; default: the model's device.
        surf_file: write the surface file there; if it exists, resume it. A file made with
            another grid, other directions (e.g. another ``seed``), other weights, other data or
            another loss is refused (FileFormatError), as by the command line.
            Default: a temporary file, deleted after reading it back.
        world: an MPI world from ``parallel.world.detect_world`` to share the points among ranks.
        progress: show a progress bar.
        channels_last, compile: speed options (NHWC memory format, ``torch.compile``); both
            change results only at float rounding level. ``channels_last`` None (the default)
            turns it on for convolutional models whose forward accepts it.
        bf16: bfloat16 autocast (about 3 significant digits; faster on recent GPUs).
        fold_bn: evaluate with each BatchNorm folded into the convolution before it, refreshed
            at every point (one pass less per layer; rounding-level differences). None (the
            default): on for the zoo's models (see :func:`folding.foldable_by_default`). Models
            without such pairs, or that torch.fx cannot trace, are evaluated as they are.
        points_per_forward: evaluate this many grid points per forward pass (``torch.func.vmap``).

    Returns:
        A :class:`Surface` with ``train_loss``, ``train_acc`` (and ``test_*``) arrays; no
        ``*_acc`` for losses without accuracy (regression, user losses). Under MPI, only rank
        0's result holds values; the other ranks get empty ``values``.
    """
    world = world or World()
    model_fingerprint = same_model_on_all_ranks(world, model)
    if device is None:
        device = next(model.parameters()).device
    model.to(device).eval()
    xs = np.asarray(x, dtype=np.float64).reshape(-1)
    ys = None if y is None else np.asarray(y, dtype=np.float64).reshape(-1)
    loss = get_loss(loss_name)
    evalsets, settings = {}, {"dir_type": dir_type, "loss_name": loss.name}
    for split, split_data in (("train", data), ("test", test_data)):
        if split_data is not None:
            evalsets[split], settings[f"{split}_data"] = _evalset(split_data, batch_size, device, num_classes,
                                                                  bool(channels_last), target_key)
    channels_last, _ = settle_channels_last(channels_last, model, evalsets)
    if directions is None:
        generator = torch.Generator().manual_seed(direction_seed(seed, 0))
        weights = tensors_of(model, dir_type)
        directions = [create_random_direction(weights, norm=norm, ignore=ignore, generator=generator)
                      for _ in range(1 if ys is None else 2)]
    dir_fingerprint = h5io.arrays_fingerprint(
        torch.as_tensor(d).detach().cpu().numpy() for direction in directions for d in direction)
    with _surface_path(surf_file, world) as path:
        with world.agreed("setting up the surface file"):
            if world.is_root and os.path.exists(path):
                check_resumable_surface(h5io.read_surface_file(path), xcoordinates=xs, ycoordinates=ys,
                                        dir_fingerprint=dir_fingerprint, model_fingerprint=model_fingerprint,
                                        settings=settings, fix="Pass another surf_file, or delete that file")
            elif world.is_root:
                h5io.create_surface_file(path, dir_file="", xcoordinates=xs, ycoordinates=ys, attrs={
                    "created_by": "surface.compute_surface", "dir_fingerprint": dir_fingerprint,
                    "model_fingerprint": model_fingerprint, "settings": settings})
        stats = run_surface(world=world, model=model, directions=directions, dir_type=dir_type,
                            surf_file=path, xcoordinates=xs, ycoordinates=ys, evalsets=evalsets,
                            loss_name=loss, progress=progress, channels_last=channels_last,
                            compile=compile, bf16=bf16,
                            fold_bn=foldable_by_default(model) if fold_bn is None else fold_bn,
                            points_per_forward=points_per_forward)
        values = {}
        if world.is_root:
            surface = h5io.read_surface_file(path)
            values = {k: v for k, v in surface.arrays.items()
                      if k in GROUPS["train"].keys + GROUPS["test"].keys}  # (loss-only groups: a subset)
    return Surface(xs, ys, values, surf_file, stats)


@contextlib.contextmanager
def _surface_path(surf_file: str | None, world: World):
    if surf_file is not None:
        yield surf_file
        return
    path = None
    if world.is_root:
        handle, path = tempfile.mkstemp(suffix=".h5", prefix="surface_")
        os.close(handle)
        os.unlink(path)
    path = world.bcast(path)
    try:
        yield path
    finally:
        if world.is_root:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _evalset(data: Any, batch_size: int, device: Any, num_classes: int | None,
             channels_last: bool, target_key: str) -> tuple[EvalSet, str]:
    """The data cut into batches, and a fingerprint of its contents (for the resume check)."""
    if hasattr(data, "x") and hasattr(data, "y"):  # data.EvalData
        inputs, targets = data.x, data.y
        num_classes = num_classes or getattr(data, "num_classes", None)
    elif isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[1]):
        inputs, targets = data
    else:  # a Dataset of (inputs, target) pairs or of dicts
        loader = torch.utils.data.DataLoader(data, batch_size=256, shuffle=False)
        inputs, targets = _collect_batches(loader, "the data", None, target_key)
    if not targets.is_floating_point():
        targets = targets.long()
    num_classes = num_classes or _num_classes(data, targets, "the data")
    tensors = [inputs[k] for k in sorted(inputs)] if isinstance(inputs, Mapping) else [inputs]
    fingerprint = h5io.arrays_fingerprint(t.detach().cpu().numpy() for t in [*tensors, targets])
    return (EvalSet(make_batches(inputs, targets, batch_size, device=device, channels_last=channels_last),
                    num_classes), fingerprint)
