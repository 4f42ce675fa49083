"""Automatic grid ranges (``--x=auto:51``): a range that shows the basin around the centre model.

Along each automatic axis, a few loss evaluations find on each side of 0 the edge of the basin:
the smallest |alpha| probed where the loss reaches ``threshold = centre loss + rise``. Steps by a
factor of 2 from a start value bracket the edge (at most ``BRACKET_STEPS``), then ``BISECTIONS``
bisections of the bracket in log scale narrow it to a factor 2**(1/8), about 9 %: at most 12
evaluations per side. A loss that is NaN or infinite counts as outside the basin.

The grid is then ``[-R, R]`` with ``R = MARGIN x`` the farther of the two edges, rounded up to a
readable number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of 10), and an odd number of
points, so that 0 (the centre model) is a grid point. With the default rise, max(1, centre loss),
the basin fills the middle two thirds of the plot and its walls the rest, as in the paper's
figures. The evaluations are deterministic, so rerunning the same command finds the same range
and resumes the same surface file.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from torch import nn

from ..errors import UsageError
from ..surface import EvalSet, surface_task
from .args import GridRange

MARGIN = 1.5  # the grid's half-width, in units of the farther edge of the basin
START = 1.0  # first |alpha| probed: the end of the reference's default range -1:1
BRACKET_STEPS = 9  # evaluations per side that may go into bracketing the edge
BISECTIONS = 3  # log-scale bisections of the bracket: the edge is then known to 2**(1/8)
READABLE = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)  # mantissas of the rounded R

LossAt = Callable[[float], float]  # loss at signed coordinate alpha along one axis


@dataclass
class AxisProbe:
    """What the probing of one axis found."""

    flag: str  # --x or --y
    asked: str  # the flag's text, e.g. auto:51
    threshold: float
    edges: tuple[float, float]  # (negative side, positive side), signed
    probes: list[tuple[float, float]] = field(default_factory=list)  # (alpha, loss) in probing order
    notes: list[str] = field(default_factory=list)

    def grid(self, num: int) -> GridRange:
        """The symmetric grid ``[-R, R]`` over this axis's basin, with an odd count."""
        half = readable_ceil(MARGIN * max(abs(e) for e in self.edges))
        return GridRange(-half, half, num if num % 2 else num + 1)


def out_of_basin(loss: float, threshold: float) -> bool:
    """Whether ``loss`` is at or above ``threshold``; NaN and infinite losses are out too."""
    return not loss < threshold


def readable_ceil(value: float) -> float:
    """The smallest readable number (``READABLE`` times a power of 10) >= ``value`` > 0."""
    power = 10.0 ** math.floor(math.log10(value))
    for mantissa in (*READABLE, 10.0):
        candidate = float(f"{mantissa * power:.3g}")
        if candidate >= value * (1 - 1e-12):
            return candidate
    raise AssertionError("unreachable: 10 x power >= value")


def find_edge(loss_at: LossAt, sign: float, threshold: float, start: float) -> tuple[float, str]:
    """The smallest |alpha| probed on the side ``sign`` (+1 or -1) where the loss is out of the
    basin, and a note where the search could not bracket it (then: the last |alpha| probed)."""
    alpha = start
    out = out_of_basin(loss_at(sign * alpha), threshold)
    inside, outside = (None, alpha) if out else (alpha, None)
    for _ in range(BRACKET_STEPS - 1):
        if inside is not None and outside is not None:
            break
        alpha = alpha / 2 if out else alpha * 2  # towards the edge: in when out, out when in
        if out_of_basin(loss_at(sign * alpha), threshold):
            outside = alpha
        else:
            inside = alpha
    if outside is None:
        return inside, (f"the loss stays below {threshold:.4g} up to {sign * inside:+.4g}; the range stops "
                        f"there")
    if inside is None:
        return outside, f"the loss is above {threshold:.4g} already at {sign * outside:+.4g}"
    for _ in range(BISECTIONS):
        middle = math.sqrt(inside * outside)
        if out_of_basin(loss_at(sign * middle), threshold):
            outside = middle
        else:
            inside = middle
    return outside, ""


def probe_axis(loss_at: LossAt, *, flag: str, asked: str, centre: float, rise: float,
               start: float) -> AxisProbe:
    """Find both edges of the basin along one axis (``loss_at(0) == centre`` is known)."""
    threshold = centre + rise
    probes: list[tuple[float, float]] = []

    def recorded(alpha: float) -> float:
        loss = float(loss_at(alpha))
        probes.append((alpha, loss))
        return loss

    plus, plus_note = find_edge(recorded, 1.0, threshold, start)
    minus, minus_note = find_edge(recorded, -1.0, threshold, plus)  # basins are roughly symmetric
    notes = [f"{flag}: {note}" for note in (minus_note, plus_note) if note]
    return AxisProbe(flag, asked, threshold, (-minus, plus), probes, notes)


def check_rise(rise: float | None) -> None:
    """``--auto_rise`` is unset or a finite number > 0.

    Raises:
        UsageError: naming the value.
    """
    if rise is not None and not (math.isfinite(rise) and rise > 0):
        raise UsageError(f"--auto_rise (the loss rise that ends the basin) must be a finite number > 0, got {rise}")


def choose_rise(rise: float | None, centre: float) -> float:
    """``--auto_rise``, or its default ``max(1, centre)``.

    Raises:
        UsageError: a bad rise, or a centre loss that is not finite (no basin to find).
    """
    check_rise(rise)
    if not math.isfinite(centre):
        raise UsageError(f"the loss at the centre is {centre}: there is no basin to find; give the range "
                         f"as numbers, e.g. --x=-1:1:51")
    return max(1.0, centre) if rise is None else rise


def probe_ranges(loss_along: Callable[[int, float], float], axes: Sequence[tuple[int, str, str]], *,
                 rise: float | None) -> tuple[float, float, list[AxisProbe]]:
    """Probe each automatic axis ``(index, flag, asked)``; ``loss_along(axis, alpha)`` is the loss
    at ``alpha`` on that axis. Returns the centre loss, the rise and each axis's probe; an axis
    starts where the previous one found its farther edge."""
    centre = float(loss_along(0, 0.0))
    rise = choose_rise(rise, centre)
    found, start = [], START
    for axis, flag, asked in axes:
        probe = probe_axis(lambda a, axis=axis: loss_along(axis, a), flag=flag, asked=asked,
                           centre=centre, rise=rise, start=start)
        found.append(probe)
        start = max(abs(e) for e in probe.edges)
    return centre, rise, found


def plane_loss(model: nn.Module, directions: Sequence[Sequence[Any]], evalsets: Mapping[str, EvalSet], *,
               dir_type: str, loss_name: str, channels_last: bool = False,
               bf16: bool = False, fold_bn: bool = False) -> Callable[[int, float], float]:
    """``loss_along(axis, alpha)``: the training loss at ``alpha`` on axis 0 (x) or 1 (y) of the
    plane, computed the way the grid computes a point (``surface_task``, one point per forward)."""
    train = {"train": evalsets["train"]}

    def loss_along(axis: int, alpha: float) -> float:
        coords = [np.zeros(1) for _ in directions]
        coords[axis][0] = alpha
        with surface_task(model=model, directions=directions, dir_type=dir_type,
                          xcoordinates=coords[0], ycoordinates=coords[1] if len(coords) > 1 else None,
                          evalsets=train, loss_name=loss_name, channels_last=channels_last,
                          bf16=bf16, fold_bn=fold_bn) as evaluate_points:
            return float(evaluate_points([(0, ("train",))], lambda: None)[0]["train_loss"])

    return loss_along


def describe(probe: AxisProbe, grid: GridRange) -> str:
    """One line for the start-up report: the edges found, the evaluations, the grid chosen."""
    lo, hi = probe.edges
    return (f"{probe.flag}={probe.asked}: the loss reaches {probe.threshold:.4g} at {lo:+.4g} and {hi:+.4g} "
            f"({len(probe.probes)} evaluations); grid {probe.flag}={grid.vmin:g}:{grid.vmax:g}:{grid.num}")


def record(centre: float, rise: float, probes: Sequence[AxisProbe], grids: Sequence[GridRange]) -> dict:
    """The ``auto_range`` attribute of the surface file: how each automatic range was found."""
    out: dict[str, Any] = {"centre_loss": centre, "rise": rise, "margin": MARGIN}
    for probe, grid in zip(probes, grids):
        out[probe.flag.lstrip("-")] = {
            "asked": probe.asked, "threshold": probe.threshold, "edges": list(probe.edges),
            "range": [grid.vmin, grid.vmax, grid.num], "evaluations": len(probe.probes),
            "probes": [list(p) for p in probe.probes], "notes": probe.notes}
    return out
