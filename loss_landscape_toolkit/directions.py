"""Directions in weight space: random (filter/layer/... normalized) and target directions, their
files, and moving a network to a point of the plane.

A direction is a list of tensors, one per entry of the network's parameter list
(``dir_type="weights"``) or of its ``state_dict()`` (``dir_type="states"``, which also moves
BatchNorm running statistics). A grid point (a, b) sets the network to
``theta = theta_star + a * x_direction + b * y_direction``.

Filter normalization (Li et al. 2018, Sec. 4): every filter of a random Gaussian direction,
i.e. every slice along dim 0 of a conv weight (one output channel) or a linear weight (one
output row), is rescaled to the norm of the matching filter of the trained weights. Tensors with
dim <= 1 (biases, BatchNorm parameters and buffers) get a zero direction with ``ignore="biasbn"``
and, as in the reference code, a copy of the weights otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from . import h5io
from ._options import DIR_TYPES, IGNORES, NORMS
from ._seeds import direction_seed
from .errors import FileFormatError

__all__ = [
    "NORMS",
    "IGNORES",
    "DIR_TYPES",
    "FILTER_EPS",
    "Direction",
    "named_tensors",
    "tensors_of",
    "normalize_direction",
    "normalize_directions",
    "create_random_direction",
    "create_target_direction",
    "cosine_similarity",
    "AxisSpec",
    "make_directions",
    "save_directions",
    "load_directions",
    "PlaneSetter",
    "check_direction_fits",
]

FILTER_EPS = 1e-10  # the reference's guard against an all-zero random filter

Direction = list[torch.Tensor]


# --------------------------------------------------------------------------- tensors of a net
def named_tensors(net: nn.Module, dir_type: str) -> list[tuple[str, torch.Tensor]]:
    """The tensors a direction of type ``dir_type`` moves, in file order, as live tensors.

    ``weights``: ``net.named_parameters()``; ``states``: ``net.state_dict()`` entries (buffers
    included). Writing into the returned tensors in place changes the network.
    """
    if dir_type == "weights":
        return [(name, p.data) for name, p in net.named_parameters()]
    if dir_type == "states":
        return list(net.state_dict(keep_vars=False).items())
    raise ValueError(f"dir_type must be one of {DIR_TYPES}, got {dir_type!r}")


def tensors_of(net: nn.Module, dir_type: str) -> list[torch.Tensor]:
    """The tensors of :func:`named_tensors`, without names."""
    return [t for _, t in named_tensors(net, dir_type)]


# --------------------------------------------------------------------------- normalization
def normalize_direction(d: torch.Tensor, w: torch.Tensor, norm: str) -> None:
    """Rescale one direction tensor ``d`` (dim > 1) in place according to ``norm``.

    filter:  d_i <- d_i * ||w_i|| / (||d_i|| + 1e-10) for every slice i along dim 0
    layer:   d   <- d * ||w|| / ||d||
    weight:  d   <- d * w (elementwise)
    dfilter: d_i <- d_i / (||d_i|| + 1e-10)
    dlayer:  d   <- d / ||d||
    none:    unchanged
    """
    if norm == "filter":
        d_rows, w_rows = d.view(d.shape[0], -1), w.reshape(w.shape[0], -1).to(d.dtype)
        scale = w_rows.norm(dim=1) / (d_rows.norm(dim=1) + FILTER_EPS)
        d_rows.mul_(scale.unsqueeze(1))
    elif norm == "layer":
        d.mul_(w.to(d.dtype).norm() / d.norm())
    elif norm == "weight":
        d.mul_(w.to(d.dtype))
    elif norm == "dfilter":
        d_rows = d.view(d.shape[0], -1)
        d_rows.div_(d_rows.norm(dim=1, keepdim=True) + FILTER_EPS)
    elif norm == "dlayer":
        d.div_(d.norm())
    elif norm != "none":
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def normalize_directions(direction: Direction, weights: Sequence[torch.Tensor], *,
                         norm: str, ignore: str) -> None:
    """Normalize every tensor of ``direction`` in place against ``weights`` (same order).

    Tensors with dim <= 1 are zeroed with ``ignore="biasbn"`` and set to a copy of the weights
    otherwise (the reference code's rule); the others are normalized by ``norm``.
    """
    if ignore not in IGNORES:
        raise ValueError(f"ignore must be one of {IGNORES}, got {ignore!r}")
    if len(direction) != len(weights):
        raise ValueError(f"direction has {len(direction)} tensors, weights have {len(weights)}")
    for d, w in zip(direction, weights):
        if d.dim() <= 1:
            if ignore == "biasbn":
                d.zero_()
            else:
                d.copy_(w)
        else:
            normalize_direction(d, w, norm)


def create_random_direction(weights: Sequence[torch.Tensor], *, norm: str, ignore: str,
                            generator: torch.Generator) -> Direction:
    """A Gaussian direction with the shapes of ``weights``, normalized by ``norm``/``ignore``.

    Drawn on the CPU in float32 from ``generator`` tensor by tensor, so the same seed gives the
    same direction on any device.
    """
    direction = [torch.randn(tuple(w.shape), generator=generator, dtype=torch.float32)
                 for w in weights]
    normalize_directions(direction, [w.detach().cpu() for w in weights], norm=norm, ignore=ignore)
    return direction


def create_target_direction(weights: Sequence[torch.Tensor],
                            target: Sequence[torch.Tensor]) -> Direction:
    """The direction from ``weights`` to ``target``: exact differences, not normalized.

    Floating tensors are subtracted in float64, where the difference of two float32 values is
    exact, so stepping by 1 lands on ``target`` bit for bit. Integer entries (BatchNorm's
    ``num_batches_tracked`` in ``states`` mode) keep their dtype, as in the reference layout.
    """
    if len(weights) != len(target):
        raise ValueError(f"models differ: {len(weights)} vs {len(target)} tensors")
    out = []
    for w, t in zip(weights, target):
        if tuple(w.shape) != tuple(t.shape):
            raise ValueError(f"models differ: shape {tuple(w.shape)} vs {tuple(t.shape)}")
        if w.is_floating_point():
            out.append(t.detach().cpu().double() - w.detach().cpu().double())
        else:
            out.append(t.detach().cpu() - w.detach().cpu())
    return out


def cosine_similarity(x: Direction | Sequence[np.ndarray], y: Direction | Sequence[np.ndarray]) -> float:
    """cos(angle) between two directions, flattened over their tensors with dim >= 1."""
    xs = [torch.as_tensor(t).double().reshape(-1) for t in x if torch.as_tensor(t).dim() > 0]
    ys = [torch.as_tensor(t).double().reshape(-1) for t in y if torch.as_tensor(t).dim() > 0]
    xv, yv = torch.cat(xs), torch.cat(ys)
    denom = xv.norm() * yv.norm()
    return float(xv @ yv / denom) if denom > 0 else float("nan")


@dataclass(frozen=True)
class AxisSpec:
    """How to make one direction: random and normalized, or towards a target model."""

    norm: str = "filter"
    ignore: str = "biasbn"
    target: Sequence[torch.Tensor] | None = None  # tensors of model_file2/model_file3

    def describe(self, target_file: str = "") -> str:
        if self.target is not None:
            return f"target: {target_file}" if target_file else "target"
        return f"random, norm={self.norm}, ignore={self.ignore}"


def make_directions(weights: Sequence[torch.Tensor], *, x: AxisSpec, y: AxisSpec | None = None,
                    same_dir: bool = False, seed: int = 123, idx: int = 0) -> list[Direction]:
    """The x (and y) directions for ``weights``; random ones come from one generator seeded
    by :func:`direction_seed`, x first, then y (``same_dir`` copies x)."""
    generator = torch.Generator().manual_seed(direction_seed(seed, idx))

    def make(spec: AxisSpec) -> Direction:
        if spec.target is not None:
            return create_target_direction(weights, spec.target)
        return create_random_direction(weights, norm=spec.norm, ignore=spec.ignore,
                                       generator=generator)

    directions = [make(x)]
    if y is not None:
        directions.append([d.clone() for d in directions[0]] if same_dir else make(y))
    return directions


def save_directions(path: str, directions: Sequence[Direction], *,
                    named: Sequence[tuple[str, torch.Tensor]], attrs: Mapping[str, Any],
                    extras: Mapping[str, np.ndarray] | None = None) -> None:
    """Write a direction file in the reference layout, with the tensor names and shapes (so a
    file made for another model is recognised) and ``attrs`` (how it was made). ``extras`` are
    extra top-level datasets (PCA: ``explained_variance_ratio_`` etc.)."""
    meta = dict(attrs)
    meta["tensor_names"] = [_strip_module(n) for n, _ in named]
    meta["tensor_shapes"] = [list(t.shape) for _, t in named]
    h5io.write_direction_file(path, [[d.numpy() for d in direction] for direction in directions],
                                 attrs=meta, extras=extras)


def load_directions(path: str, net: nn.Module, *, dir_type: str,
                    ndirections: int) -> h5io.DirectionFile:
    """Read a direction file and check it fits ``net``; keep its first ``ndirections``.

    Raises:
        FileFormatError: unreadable, too few directions, or made for another model/dir_type.
    """
    dfile = h5io.read_direction_file(path)
    if len(dfile.directions) < ndirections:
        raise FileFormatError(
            f"{path} has only an x direction but a 2D surface (--y) needs a y direction too; "
            f"drop --y, or use a 2D direction file")
    made_with = dfile.attrs.get("dir_type")
    if made_with and made_with != dir_type:
        raise FileFormatError(f"{path} was made with --dir_type {made_with}; pass --dir_type "
                              f"{made_with} to use it")
    named = named_tensors(net, dir_type)
    if "tensor_names" in dfile.attrs:
        names = dfile.attrs["tensor_names"]
        ours = [_strip_module(n) for n, _ in named]
        for i, (theirs, mine) in enumerate(zip(names, ours)):
            if theirs != mine:
                raise FileFormatError(
                    f"{path} was made for another model: tensor {i} is {theirs!r} there but "
                    f"{mine!r} here (made for --model {dfile.attrs.get('model', '?')})")
    for k, direction in enumerate(dfile.directions[:ndirections]):
        check_direction_fits(direction, named, what="xy"[k] + " direction", source=path)
    return h5io.DirectionFile(dfile.path, dfile.directions[:ndirections], dfile.attrs, dfile.extras)


def _strip_module(name: str) -> str:
    return name[len("module."):] if name.startswith("module.") else name


# --------------------------------------------------------------------------- moving the network
class PlaneSetter:
    """Sets a network to ``origin + sum_k c_k * directions[k]`` in place, point after point.

    The origin and the directions are held once, in float64, on the network's device; each
    point costs a few fused elementwise operations and one rounding to the tensors' own dtype,
    so every grid point is the correctly rounded value of theta* + a*dx + b*dy. Integer tensors
    (``num_batches_tracked``) never move: they do not affect evaluation.
    """

    def __init__(self, net: nn.Module, directions: Sequence[Sequence[torch.Tensor | np.ndarray]], *,
                 dir_type: str):
        named = named_tensors(net, dir_type)
        for k, direction in enumerate(directions):
            check_direction_fits(direction, named, what=f"direction {k}")
        keep = [i for i, (_, t) in enumerate(named) if t.is_floating_point()]
        self._targets = [named[i][1] for i in keep]
        self._origin = [t.detach().double().clone() for t in self._targets]
        self._directions = [
            [torch.as_tensor(np.asarray(d[i]) if isinstance(d[i], np.ndarray) else d[i])
             .to(device=self._targets[j].device, dtype=torch.float64)
             for j, i in enumerate(keep)]
            for d in directions
        ]
        self._scratch = [o.clone() for o in self._origin]

    @property
    def ndirections(self) -> int:
        return len(self._directions)

    @torch.no_grad()
    def set(self, coords: Sequence[float]) -> None:
        """Move the network to the point with coordinates ``coords`` (one per direction)."""
        if len(coords) != len(self._directions):
            raise ValueError(f"expected {len(self._directions)} coordinates, got {len(coords)}")
        torch._foreach_copy_(self._scratch, self._origin)
        for c, direction in zip(coords, self._directions):
            if c != 0.0:
                torch._foreach_add_(self._scratch, direction, alpha=float(c))
        torch._foreach_copy_(self._targets, self._scratch)

    def restore(self) -> None:
        """Put the network back at the origin."""
        self.set([0.0] * len(self._directions))


def check_direction_fits(direction: Sequence, named: Sequence[tuple[str, torch.Tensor]], *,
                         what: str, source: str = "") -> None:
    """Raise FileFormatError unless ``direction`` has one tensor per named tensor, same shapes."""
    where = f" in {source}" if source else ""
    if len(direction) != len(named):
        raise FileFormatError(
            f"{what}{where} has {len(direction)} tensors but the model has {len(named)}: it was "
            f"made for another model or --dir_type; pass the matching --model/--dir_type or "
            f"let plot_surface.py create a new direction file")
    for i, (d, (name, t)) in enumerate(zip(direction, named)):
        if tuple(d.shape) != tuple(t.shape):
            raise FileFormatError(
                f"{what}{where}: tensor {i} ({name}) has shape {tuple(d.shape)} but the model's "
                f"has {tuple(t.shape)}: the direction file was made for another model")
