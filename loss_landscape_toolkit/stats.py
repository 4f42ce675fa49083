"""Metrics of a surface file, and numbers that compare minimizers (the paper compares by eye).

Two things live here, both shared by the plots and the mesh export:

* :func:`get_metric` picks one array of a surface file by name (``train_loss``, ``test_acc``,
  ``max_eig``, any other grid array, or the derived ``train_err``/``test_err`` = 100 - accuracy)
  and masks it: points not computed yet become NaN, whatever placeholder the file holds.
* :func:`surface_stats` gives the paper-level numbers of a loss surface:

  centre value
      the loss at the grid point nearest the origin (``x = 0``, and ``y = 0`` in 2D): the
      trained model itself when the grid contains 0.
  width under centre + delta (default delta 0.1, the paper's 0.1-level contour)
      along each axis, on the grid line through the centre: the length of the connected
      interval around the centre where loss <= centre value + delta. Each end is where the
      parabola through the last grid point under the level, the first one above it and one
      more neighbour (the one towards the centre when known) meets the level, which is exact
      on quadratic walls (a straight line between two points falls short by up to h^2 / 4x
      of the width, h the step, x the half-width). When the interval reaches the edge of the
      grid, or a point that is not computed or not finite (NaN, inf), the end is that grid
      point and the width is only a lower bound (``bounded`` is False).
  coarse grids
      a basin less than ``MIN_STEPS`` (4) grid steps across, or one whose level is crossed
      within the first grid step from the centre, is not measured by the grid: any
      interpolation there is a guess about values between the points. Such a width is
      ``resolved = False``; what the grid does show is the upper bound ``upper``, the distance
      between the first grid points above the level on each side (``bracket``), and that is
      the number printed (``<=``). A warning line names the axes and suggests a rerun on a
      narrower range with 21 points (or more), zoomed onto the bracket.
  curvature of a quadratic fit
      least squares of ``c0 + c1 dx + c3 dx^2`` (1D) or
      ``c0 + c1 dx + c2 dy + c3 dx^2 + c4 dx dy + c5 dy^2`` (2D), with ``dx, dy`` measured from
      the centre point, over the computed finite points of a window around the centre: per
      axis at most ``fit_points`` grid steps (default 2) and no more than fit in the inner half
      of the basin along that axis (half the distance to the nearer end of the width), one step
      at least. Far from the centre the loss leaves its quadratic model (the fit over a wide
      window of a real network reads several times the curvature at the bottom); near it, the
      bias of a smooth loss shrinks with the window squared. Reported: the second derivatives
      ``d2/dx2 = 2 c3``, ``d2/dy2 = 2 c5``, ``d2/dxdy = c4`` and in 2D the principal curvatures
      (eigenvalues of that 2 x 2 Hessian). When one grid step from the centre already leaves
      the basin, the fit is a secant across it, not the curvature at the bottom
      (``resolved = False``).
  fraction under a level (2D)
      the share of the computed grid points (NaN/inf ones included, they are above any level)
      whose loss is <= level; the level defaults to centre value + delta.

For a bowl ``L = a x^2 + b y^2`` on a grid through 0 these are: centre 0, widths
``2 sqrt(delta / a)`` and ``2 sqrt(delta / b)``, curvatures ``2a`` and ``2b`` (all exact: the
interpolant and the fit model contain the bowl), and a fraction close to the ellipse's area
``pi delta / sqrt(a b)`` over the grid's area (the tests derive their tolerances from these forms).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from . import h5io
from ._files import writer_lock
from .errors import FileFormatError, UsageError

ERROR_KEYS = {"train_err": "train_acc", "test_err": "test_acc"}  # derived: 100 - accuracy
STATS_ATTR_PREFIX = "stats_"


# --------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class Metric:
    """One array of a surface file: ``values`` is float64 with NaN where not computed."""

    name: str
    values: np.ndarray  # (nx,) or (ny, nx), Z[iy, ix] = f(x[ix], y[iy])
    done: np.ndarray  # bool, same shape

    @property
    def finite(self) -> np.ndarray:
        """Computed points with a finite value."""
        return self.done & np.isfinite(self.values)


def metric_group(name: str) -> h5io.MetricGroup | None:
    """The metric group whose completion mask applies to ``name`` (None: no placeholder)."""
    for group in (h5io.TRAIN, h5io.TEST, h5io.EIG):
        if name in group.keys:
            return group
    return None


def available_metrics(surface: h5io.SurfaceFile) -> list[str]:
    """Names :func:`get_metric` accepts for this file, stored arrays and derived ones."""
    names = set(surface.arrays)
    names.update(err for err, acc in ERROR_KEYS.items() if acc in surface.arrays)
    return sorted(names)


def get_metric(surface: h5io.SurfaceFile, name: str) -> Metric:
    """The array ``name`` of ``surface``, with points not computed set to NaN.

    Raises:
        UsageError: ``name`` is neither in the file nor derivable; the message lists the
            names that are.
    """
    source = ERROR_KEYS.get(name, name)
    if source not in surface.arrays:
        raise UsageError(
            f"{surface.path} has no '{name}'; available: {', '.join(available_metrics(surface)) or 'none'} "
            f"(choose one with --surf_name)")
    group = metric_group(source)
    done = surface.done_mask(group) if group else np.ones(surface.shape, dtype=bool)
    values = surface.arrays[source]
    if name in ERROR_KEYS:
        values = 100.0 - values
    return Metric(name, np.where(done, values, np.nan), done.copy())


def loss_names(surface: h5io.SurfaceFile) -> list[str]:
    """The loss arrays of a file (``train_loss``, ``test_loss``, ... in that order)."""
    first = [k for k in ("train_loss", "test_loss") if k in surface.arrays]
    return first + sorted(k for k in surface.arrays if k.endswith("_loss") and k not in first)


def centre_index(surface: h5io.SurfaceFile) -> tuple[int, ...]:
    """Index of the grid point nearest the origin: ``(ix,)`` in 1D, ``(iy, ix)`` in 2D."""
    ix = int(np.abs(surface.xcoordinates).argmin())
    if surface.ycoordinates is None:
        return (ix,)
    return (int(np.abs(surface.ycoordinates).argmin()), ix)


def completion_summary(surface: h5io.SurfaceFile) -> str:
    """One line per loss array: how many points are done, the loss and accuracy at the centre,
    and where the minimum and maximum are (what a run prints when it ends)."""
    x, y = surface.xcoordinates, surface.ycoordinates
    centre = centre_index(surface)

    def where(index: tuple[int, ...]) -> str:
        return f"x={x[index[-1]]:g}" if y is None else f"(x, y)=({x[index[1]]:g}, {y[index[0]]:g})"

    lines = []
    for name in loss_names(surface):
        loss = get_metric(surface, name)
        acc_name = name[: -len("_loss")] + "_acc"
        text = f"{name}: {int(loss.done.sum())}/{loss.done.size} points done"
        if loss.done[centre]:
            text += f"; at the centre {where(centre)}: loss {loss.values[centre]:.4g}"
            if acc_name in surface.arrays:
                text += f", accuracy {surface.arrays[acc_name][centre]:.2f}%"
        if loss.finite.any():
            masked = np.where(loss.finite, loss.values, np.nan)
            lo = np.unravel_index(np.nanargmin(masked), masked.shape)
            hi = np.unravel_index(np.nanargmax(masked), masked.shape)
            text += f"; min {loss.values[lo]:.4g} at {where(lo)}; max {loss.values[hi]:.4g} at {where(hi)}"
        nonfinite = int((loss.done & ~loss.finite).sum())
        if nonfinite:
            text += f"; {nonfinite} NaN/inf point(s)"
        lines.append(text)
    if "max_eig" in surface.arrays:
        done = surface.done_mask(h5io.EIG)
        text = f"max_eig/min_eig: {int(done.sum())}/{done.size} points done"
        if done[centre]:
            hi, lo = surface.arrays["max_eig"][centre], surface.arrays["min_eig"][centre]
            text += (f"; at the centre {where(centre)}: max_eig {hi:.4g}, min_eig {lo:.4g}, "
                     f"|min/max| {abs(lo / hi) if hi else float('nan'):.3g}")
        if "eig_hvps" in surface.arrays and done.any():
            text += f"; {surface.arrays['eig_hvps'][done].mean():.1f} HVPs per point on average"
        lines.append(text)
    return "\n".join(lines) if lines else "no loss values in this file yet"


# --------------------------------------------------------------------------- numbers
MIN_STEPS = 4  # a basin narrower than this many grid steps is bounded, not measured
RERUN_POINTS = 21  # points per axis of the rerun a coarse-grid warning suggests


@dataclass(frozen=True)
class Width:
    """The interval around the centre under the level, along one axis."""

    width: float  # right - left
    left: float
    right: float
    bounded: bool  # False: an end stopped at the grid edge or at an unknown point (lower bound)
    resolved: bool = True  # False: too few grid steps across; ``upper`` is the number to quote
    upper: float | None = None  # distance between the first grid points above the level (None: open)
    bracket: tuple[float | None, float | None] = (None, None)  # those grid points (None: open end)
    step: float | None = None  # grid step along this axis


@dataclass(frozen=True)
class QuadraticFit:
    """Second derivatives of a least-squares quadratic near the centre."""

    points: int  # points used
    radius: tuple[float, ...]  # largest |dx| (and |dy|) of the fit window
    d2x: float
    d2y: float | None = None
    d2xy: float | None = None
    principal: tuple[float, float] | None = None  # eigenvalues of [[d2x, d2xy], [d2xy, d2y]], descending
    resolved: bool = True  # False: the window (one grid step at least) reaches beyond the basin


@dataclass(frozen=True)
class SurfaceStats:
    """The comparable numbers of one loss array (see the module docstring for definitions)."""

    name: str
    centre: tuple[float, ...]  # coordinates of the centre point, (x,) or (x, y)
    centre_value: float | None
    delta: float
    widths: dict[str, Width] = field(default_factory=dict)  # "x", "y"
    fit: QuadraticFit | None = None
    level: float | None = None
    fraction_under: float | None = None
    points_under: int | None = None
    points_done: int = 0
    warning: str | None = None  # the grid is too coarse for this basin, and the rerun to make

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN-free) form, as stored by :func:`save_stats`."""
        return _json_safe(asdict(self))


def surface_stats(surface: h5io.SurfaceFile, name: str = "train_loss", *, delta: float = 0.1,
                  fit_points: int = 2, level: float | None = None) -> SurfaceStats:
    """Comparable numbers of the loss array ``name`` (definitions in the module docstring).

    Args:
        surface: a surface file read by :func:`h5io.read_surface_file`.
        name: the array (any name :func:`get_metric` accepts).
        delta: the width and default fraction level are centre value + ``delta``.
        fit_points: most grid steps from the centre, per axis, used by the quadratic fit (fewer
            where the basin is narrower, one at least).
        level: the level of the fraction under it (2D); default centre value + ``delta``.

    Returns:
        The numbers; each is None where it cannot be computed (e.g. centre not computed).

    Raises:
        UsageError: unknown ``name``, ``delta <= 0`` or ``fit_points < 1``.
    """
    if not delta > 0:
        raise UsageError(f"the level above the centre must be > 0, got {delta}")
    if fit_points < 1:
        raise UsageError(f"the quadratic fit needs at least 1 grid step per side, got {fit_points}")
    metric = get_metric(surface, name)
    centre = centre_index(surface)
    x, y = surface.xcoordinates, surface.ycoordinates
    coords = (x[centre[0]],) if y is None else (x[centre[1]], y[centre[0]])
    z0 = float(metric.values[centre])
    base = dict(name=name, centre=tuple(float(c) for c in coords), delta=delta,
                points_done=int(metric.done.sum()))
    if not math.isfinite(z0):
        return SurfaceStats(centre_value=None, **base)
    threshold = z0 + delta
    if y is None:
        widths = {"x": _width(x, metric.values, centre[0], threshold)}
        fit = _judge_fit(_fit_1d(x, metric, centre[0], _fit_steps(widths["x"], coords[0], fit_points)),
                         widths, coords)
        return SurfaceStats(centre_value=z0, widths=widths, fit=fit,
                            warning=_coarse_warning(widths, {"x": x}, fit), **base)
    iy, ix = centre
    widths = {"x": _width(x, metric.values[iy, :], ix, threshold),
              "y": _width(y, metric.values[:, ix], iy, threshold)}
    steps = (_fit_steps(widths["x"], coords[0], fit_points), _fit_steps(widths["y"], coords[1], fit_points))
    fit = _judge_fit(_fit_2d(x, y, metric, centre, steps), widths, coords)
    level = threshold if level is None else float(level)
    under = int((metric.finite & (np.where(metric.finite, metric.values, np.inf) <= level)).sum())
    done = int(metric.done.sum())
    return SurfaceStats(centre_value=z0, widths=widths, fit=fit,
                        level=level, fraction_under=under / done if done else None,
                        points_under=under, warning=_coarse_warning(widths, {"x": x, "y": y}, fit), **base)


def _width(coords: np.ndarray, values: np.ndarray, k: int, threshold: float) -> Width:
    """Walk out from the centre ``k`` along one grid line while the loss stays under the level."""
    ends, outer, first_step = [], [], False
    for step in (-1, 1):
        j = k
        while _known(values, j + step) and values[j + step] <= threshold:
            j += step
        if _known(values, j + step):  # values[j + step] > threshold >= values[j]
            ends.append(_crossing(coords, values, j, step, threshold))
            outer.append(float(coords[j + step]))
            first_step |= j == k
        else:  # grid edge, or a point not computed / NaN / inf: no crossing to interpolate
            ends.append(float(coords[j]))
            outer.append(None)
    left, right = ends
    bounded = None not in outer
    h = float(abs(coords[1] - coords[0])) if len(coords) > 1 else None
    narrow = bounded and h is not None and right - left < MIN_STEPS * h * (1 - 1e-9)
    return Width(right - left, left, right, bounded, resolved=not (first_step or narrow),
                 upper=outer[1] - outer[0] if bounded else None, bracket=(outer[0], outer[1]), step=h)


def _known(values: np.ndarray, i: int) -> bool:
    return 0 <= i < len(values) and bool(np.isfinite(values[i]))


def _crossing(coords: np.ndarray, values: np.ndarray, j: int, step: int, threshold: float) -> float:
    """Where the level is crossed between ``j`` (under it) and ``j + step`` (above it): on the
    parabola through these two points and a third neighbour (exact on quadratic walls), or on
    the line through the two when neither neighbour is known.

    The third point is the one before ``j`` (towards the centre: when ``j`` is past the centre,
    all three points lie on one wall), else the one after ``j + step``.
    """
    nxt = j + step
    a, b, ya, yb = coords[j], coords[nxt], values[j], values[nxt]
    third = next((i for i in (j - step, nxt + step) if _known(values, i)), None)
    # In s = (t - a) / (b - a) the interpolant minus the level is A s^2 + B s + C, with
    # C = ya - level <= 0 and A + B + C = yb - level > 0: one crossing in [0, 1] at least.
    big_c = ya - threshold
    big_a = 0.0
    if third is not None:
        c, yc = coords[third], values[third]
        second_difference = ((yc - ya) / (c - a) - (yb - ya) / (b - a)) / (c - b)
        big_a = second_difference * (b - a) ** 2
    big_b = (yb - ya) - big_a
    s = _last_root_in_unit(big_a, big_b, big_c)
    return float(a + s * (b - a))


def _last_root_in_unit(a: float, b: float, c: float) -> float:
    """The largest root in [0, 1] of a s^2 + b s + c, given c <= 0 < a + b + c (the last
    crossing before the point above the level)."""
    linear = -c / (a + b)  # the chord (a = 0); a + b is the rise between the two points, > 0
    if abs(a) <= 1e-12 * (abs(b) + abs(c)):
        return min(max(linear, 0.0), 1.0)
    root = math.sqrt(max(b * b - 4 * a * c, 0.0))
    q = -0.5 * (b + math.copysign(root, b))
    roots = [q / a] + ([c / q] if q != 0 else [])
    inside = [r for r in roots if -1e-9 <= r <= 1 + 1e-9]
    return min(max(max(inside), 0.0), 1.0) if inside else linear


def _fit_steps(width: Width, centre: float, fit_points: int) -> int:
    """Grid steps per side of the fit window: at most ``fit_points`` and, one step at least, no
    more than fit in the inner half of the basin (up to half the distance to its nearer end),
    where the loss is still close to its quadratic model."""
    half = _half_width(width, centre)
    if width.step is None or half is None:
        return fit_points
    return min(fit_points, max(1, int(math.floor(half / (2 * width.step) + 1e-9))))


def _half_width(width: Width, centre: float) -> float | None:
    """Distance from the centre to the nearer end of the basin that the grid shows (an end at
    the grid edge or at an unknown point does not count); None when neither does."""
    sides = [(centre - width.left, width.bracket[0]), (width.right - centre, width.bracket[1])]
    known = [d for d, outer in sides if outer is not None]
    return min(known) if known else None


def _judge_fit(fit: QuadraticFit | None, widths: dict[str, Width],
               centre: tuple[float, ...]) -> QuadraticFit | None:
    """Mark the fit unresolved when one grid step from the centre already leaves the basin:
    it is then a secant across the basin, not the curvature at its bottom."""
    def inside(w: Width, c: float) -> bool:
        half = _half_width(w, c)
        return w.step is None or half is None or half >= w.step * (1 - 1e-9)

    if fit is None or all(inside(w, c) for w, c in zip(widths.values(), centre)):
        return fit
    return replace(fit, resolved=False)


def _coarse_warning(widths: dict[str, Width], coords: dict[str, np.ndarray],
                    fit: QuadraticFit | None) -> str | None:
    """One line when a basin spans too few grid steps: which axes, and a grid to rerun on."""
    coarse = {axis: w for axis, w in widths.items() if not w.resolved}
    if not coarse:
        return None
    spans = ", ".join(f"{axis} spans ~{w.width / w.step:.2g} steps of {w.step:.3g}" for axis, w in coarse.items())
    rerun = []
    for axis, w in coarse.items():
        if w.bounded:  # the first grid points above the level enclose the basin: zoom onto them
            half = _round_up(max(abs(end) for end in w.bracket))
            n = max(RERUN_POINTS, len(coords[axis]))
            rerun.append(f"--{axis}=-{half:g}:{half:g}:{n + 1 - n % 2}")
    example = f", e.g. {' '.join(rerun)}" if rerun else ""
    secant = ", and the curvature is a secant across the basin" if fit is not None and not fit.resolved else ""
    return (f"grid too coarse for this basin ({spans}; {MIN_STEPS} are needed, with the level crossed beyond "
            f"the first step): those widths are bounds, not estimates{secant}; rerun on a finer or narrower "
            f"range{example}")


def _round_up(value: float) -> float:
    """``value`` rounded up to two significant digits."""
    if not value > 0:
        return value
    unit = 10.0 ** (math.floor(math.log10(value)) - 1)
    return math.ceil(round(value / unit, 9)) * unit


def _window(n: int, k: int, steps: int) -> slice:
    return slice(max(0, k - steps), min(n, k + steps + 1))


def _fit_1d(x: np.ndarray, metric: Metric, k: int, steps: int) -> QuadraticFit | None:
    win = _window(len(x), k, steps)
    dx, z, ok = x[win] - x[k], metric.values[win], metric.finite[win]
    coef = _lstsq(np.stack([np.ones_like(dx), dx, dx * dx], axis=1)[ok], z[ok])
    if coef is None:
        return None
    return QuadraticFit(points=int(ok.sum()), radius=(float(np.abs(dx).max()),), d2x=2 * coef[2])


def _fit_2d(x: np.ndarray, y: np.ndarray, metric: Metric, centre: tuple[int, ...],
            steps: tuple[int, int]) -> QuadraticFit | None:
    iy, ix = centre
    wy, wx = _window(len(y), iy, steps[1]), _window(len(x), ix, steps[0])
    dx, dy = np.meshgrid(x[wx] - x[ix], y[wy] - y[iy])  # (wy, wx)
    ok, z = metric.finite[wy, wx], metric.values[wy, wx]
    design = np.stack([np.ones_like(dx), dx, dy, dx * dx, dx * dy, dy * dy], axis=-1)  # (wy, wx, 6)
    coef = _lstsq(design[ok], z[ok])
    if coef is None:
        return None
    d2x, d2y, d2xy = 2 * coef[3], 2 * coef[5], coef[4]
    eig = np.linalg.eigvalsh(np.array([[d2x, d2xy], [d2xy, d2y]]))
    return QuadraticFit(points=int(ok.sum()), radius=(float(np.abs(dx).max()), float(np.abs(dy).max())),
                        d2x=d2x, d2y=d2y, d2xy=d2xy, principal=(float(eig[1]), float(eig[0])))


def _lstsq(design: np.ndarray, z: np.ndarray) -> list[float] | None:
    """Coefficients, or None when the points do not determine them (too few, collinear)."""
    if design.shape[0] < design.shape[1]:
        return None
    coef, _, rank, _ = np.linalg.lstsq(design, z, rcond=None)
    return [float(c) for c in coef] if rank == design.shape[1] else None


# --------------------------------------------------------------------------- output
def format_stats(stats: SurfaceStats) -> str:
    """A few indented lines for the terminal."""
    where = ", ".join(f"{c:g}" for c in stats.centre)
    axes = "x" if len(stats.centre) == 1 else "(x, y)"
    if stats.centre_value is None:
        return f"{stats.name}: centre {axes}=({where}) not computed or not finite; no comparable numbers"
    lines = [f"{stats.name}: {stats.centre_value:.5g} at the centre {axes}=({where})"]
    level = stats.centre_value + stats.delta
    parts = [f"{axis} {_format_width(w)}" for axis, w in stats.widths.items()]
    bounded = all(w.bounded for w in stats.widths.values())
    note = "" if bounded else " (>=: reaches the grid edge or a NaN/unfinished point)"
    lines.append(f"  width under centre + {stats.delta:g} = {level:.5g}: {'; '.join(parts)}{note}")
    fit = stats.fit
    if fit is None:
        lines.append("  quadratic fit: too few computed points near the centre")
    else:
        unresolved = "" if fit.resolved else " (window wider than the basin: a secant, not the curvature)"
        if fit.d2y is None:
            lines.append(f"  quadratic fit ({fit.points} points, |dx| <= {fit.radius[0]:.3g}): "
                         f"d2/dx2 {fit.d2x:.4g}{unresolved}")
        else:
            window = f"|dx| <= {fit.radius[0]:.3g}, |dy| <= {fit.radius[1]:.3g}"
            lines.append(f"  quadratic fit ({fit.points} points, {window}): "
                         f"d2/dx2 {fit.d2x:.4g}, d2/dy2 {fit.d2y:.4g}, d2/dxdy {fit.d2xy:.4g}; "
                         f"principal curvatures {fit.principal[0]:.4g}, {fit.principal[1]:.4g}{unresolved}")
    if stats.fraction_under is not None:
        lines.append(f"  fraction of the grid under {stats.level:.5g}: {100 * stats.fraction_under:.2f}% "
                     f"({stats.points_under}/{stats.points_done} computed points)")
    if stats.warning:
        lines.append(f"  warning: {stats.warning}")
    return "\n".join(lines)


def _format_width(w: Width) -> str:
    if not w.bounded:
        return f">= {w.width:.4g} [{w.left:.4g}, {w.right:.4g}]"
    if not w.resolved:  # the bracket is what the grid shows; the interpolation only a guess
        return f"<= {w.upper:.4g} [{w.bracket[0]:.4g}, {w.bracket[1]:.4g}] (interpolated guess {w.width:.3g})"
    return f"{w.width:.4g} [{w.left:.4g}, {w.right:.4g}]"


def save_stats(path: str, stats: list[SurfaceStats]) -> None:
    """Store each summary as a JSON attribute ``stats_<name>`` on the surface file.

    The file is updated atomically (h5_util) and refused while a run is writing it.

    Raises:
        FileFormatError: the file is being written by a running job, or cannot be updated.
    """
    attrs = {STATS_ATTR_PREFIX + s.name: s.as_dict() for s in stats}
    try:
        with writer_lock(path):
            h5io.update_surface_file(path, attrs=attrs)
    except OSError as exc:  # read-only folder or file: the plots are still made
        raise FileFormatError(f"cannot store the summary in {path}: {exc.strerror or exc}") from None


def summarize(surface: h5io.SurfaceFile, *, save: bool = False, level: float | None = None) -> str:
    """The comparable numbers of every loss array of a file, as text; stored too with ``save``.

    Raises:
        FileFormatError: (``save``) the file cannot be updated.
    """
    surf_file = surface.path
    summaries = [surface_stats(surface, name, level=level) for name in loss_names(surface)]
    lines = [format_stats(s) for s in summaries] or [f"{surf_file} has no loss arrays to summarize"]
    if save and summaries:
        save_stats(surf_file, summaries)
        names = ", ".join(STATS_ATTR_PREFIX + s.name for s in summaries)
        lines.append(f"stored as attributes {names} of {surf_file}")
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
