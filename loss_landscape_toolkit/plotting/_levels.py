"""Which contour levels and colours a 2D figure uses, and how their numbers are written.

Two rules. Given any of ``--vmin``/``--vmax``/``--vlevel``, the reference's levels
``arange(vmin, vmax, vlevel)`` (its defaults 0.1, 10, 0.5 for the flags left out), so an old
command line draws what it drew. Given none, levels from the data: an error or accuracy map
(a name ending in ``_err`` or ``_acc``) gets every 5 % of a 0-100 scale; any other array gets
levels log-spaced in the rise over its minimum, so both the floor of the basin and its walls
have lines whatever the scale (a random network at 2.3 or a trained one at 0.01 with walls at
1e4).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.colors import BoundaryNorm, Colormap, Normalize
from matplotlib.ticker import MaxNLocator

from ..errors import RangeError

REFERENCE_LEVELS = (0.1, 10.0, 0.5)  # the reference's --vmin, --vmax, --vlevel
PERCENT_SUFFIXES = ("_err", "_acc")  # arrays in percent: drawn on 0..100
PERCENT_STEP = 5.0
NUM_LEVELS = 20  # levels from the data, before rounding merges any
LOW_SHARE = 0.02  # the innermost ring encloses about this share of the computed points
HIGH_SHARE = 0.98  # the outermost ring leaves about this share inside it (outliers do not set the scale)
MAX_DECADES = 6  # the rises span at most this many powers of ten (about 3 levels a decade)
MAX_LABELS = 10  # labelled contour lines of one figure, before overlapping labels are dropped
HIGH_RINGS = np.logspace(1, 8, num=8)  # the reference's rings of high loss around a trajectory


@dataclass(frozen=True)
class Levels:
    """The levels of one 2D array and the colours that go with them.

    Attributes:
        values: the contour levels, finite and strictly increasing.
        norm: value -> colour of filled contours and heat maps (monotone in the value).
        top: the 3D surface is clipped at this height; None: not clipped.
        percent: the array is in percent (error, accuracy): its z axis is 0..100.
        from_flags: the reference's ``arange(vmin, vmax, vlevel)``.
    """

    values: np.ndarray
    norm: Normalize
    top: float | None
    percent: bool
    from_flags: bool

    def texts(self) -> dict[float, str]:
        """The label of each level, with just the digits that tell it from its neighbours."""
        return dict(zip(self.values.tolist(), level_texts(self.values)))

    def labelled(self, lo: float, hi: float, most: int = MAX_LABELS) -> np.ndarray:
        """The levels strictly between ``lo`` and ``hi`` (those drawn), thinned to at most ``most``."""
        drawn = self.values[(self.values > lo) & (self.values < hi)]
        return every_kth(drawn, math.ceil(len(drawn) / most))


def every_kth(values: np.ndarray, k: int) -> np.ndarray:
    """Every ``k``-th value, starting where the chosen values are roundest (fewest significant
    digits on average: 10, 20, 30 rather than 5, 15, 25)."""
    k = max(1, k)

    def digits(chosen: np.ndarray) -> tuple[float, int]:
        texts = [t.split("e")[0].lstrip("-").replace(".", "").strip("0") for t in level_texts(chosen)]
        return sum(len(t) for t in texts) / max(len(texts), 1), -len(chosen)

    return min((values[start::k] for start in range(min(k, len(values)))), key=digits, default=values)


def is_percent(name: str) -> bool:
    return name.endswith(PERCENT_SUFFIXES)


def flags_given(vmin: float | None, vmax: float | None, vlevel: float | None) -> bool:
    return not (vmin is None and vmax is None and vlevel is None)


def reference_limits(vmin: float | None, vmax: float | None,
                     vlevel: float | None) -> tuple[float, float, float]:
    """The given flags with the reference's defaults for those left out, checked.

    Raises:
        RangeError: not finite, ``vmin >= vmax`` or ``vlevel <= 0``.
    """
    vmin, vmax, vlevel = (REFERENCE_LEVELS[i] if v is None else float(v) for i, v in enumerate((vmin, vmax, vlevel)))
    if not np.isfinite([vmin, vmax, vlevel]).all():
        raise RangeError(f"--vmin, --vmax and --vlevel must be finite, got {vmin}, {vmax}, {vlevel}")
    if not vmin < vmax:
        raise RangeError(f"--vmin ({vmin}) must be smaller than --vmax ({vmax})")
    if not vlevel > 0:
        raise RangeError(f"--vlevel (the contour spacing) must be > 0, got {vlevel}")
    return vmin, vmax, vlevel


def choose_levels(z: np.ma.MaskedArray, name: str, *, vmin: float | None = None, vmax: float | None = None,
                  vlevel: float | None = None, rings: bool = False) -> tuple[Levels, str | None]:
    """The levels of array ``name`` (values ``z``, masked where not computed or not finite).

    Args:
        z: the array; only its unmasked values count.
        name: its name; ``*_err``/``*_acc`` are percentages.
        vmin, vmax, vlevel: the reference's flags; all None: levels from the data.
        rings: with the flags, add the reference's rings 10, 100, ..., 1e8 above ``vmax``
            (trajectory figures).

    Returns:
        The levels, and a note to print when the given levels miss the values (levels from the
        data are used then), else None.

    Raises:
        RangeError: bad flags (see :func:`reference_limits`).
    """
    values = z.compressed()  # finite, computed
    lo, hi = float(values.min()), float(values.max())
    if flags_given(vmin, vmax, vlevel):
        vmin, vmax, vlevel = reference_limits(vmin, vmax, vlevel)
        given = np.arange(vmin, vmax, vlevel)
        if rings:
            given = np.union1d(given, HIGH_RINGS[given[-1] < HIGH_RINGS])
        if len(given) >= 2 and ((given > lo) & (given < hi)).any():
            return Levels(given, Normalize(vmin, vmax), vmax, False, True), None
        note = (f"no contour level of arange({vmin:g}, {vmax:g}, {vlevel:g}) lies within the values of {name} "
                f"({lo:.4g} .. {hi:.4g}); using levels from the data (leave out --vmin/--vmax/--vlevel)")
        return _from_data(z, name), note if lo < hi else None
    return _from_data(z, name), None


def _from_data(z: np.ma.MaskedArray, name: str) -> Levels:
    if is_percent(name):
        levels = np.arange(0.0, 100.0 + PERCENT_STEP / 2, PERCENT_STEP)
        return Levels(levels, Normalize(0.0, 100.0), None, True, False)
    levels = data_levels(z.compressed())
    return Levels(levels, BoundaryNorm(levels, ncolors=256, extend="both"), float(levels[-1]), False, False)


def data_levels(values: np.ndarray, num: int = NUM_LEVELS) -> np.ndarray:
    """About ``num`` readable levels: the minimum plus rises log-spaced from the rise that
    encloses ``LOW_SHARE`` of the points to the one that encloses ``HIGH_SHARE`` of them.

    Log spacing puts several levels just above the minimum (the basin's floor) and the rest,
    further apart, up its walls. Each level is rounded to the power of ten below its gap to its
    neighbours, so labels are short and neighbours still differ. NaN and inf are ignored.
    A (nearly) constant array gets a few levels around its value.

    Returns:
        Finite, strictly increasing levels (at least 2).
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        raise ValueError("no finite values to choose contour levels from")
    lo = float(values.min())
    rises = values - lo
    rises = rises[rises > 0]
    if rises.size:
        high = float(np.quantile(rises, HIGH_SHARE))
        low = max(float(np.quantile(rises, LOW_SHARE)), high * 10.0 ** -MAX_DECADES)
        if high > low:
            levels = _rounded(lo + np.geomspace(low, high, num))
            levels = levels[levels > lo]
            if len(levels) >= 2:
                return levels
    return MaxNLocator(nbins=10).tick_values(lo, float(values.max()))


def _rounded(levels: np.ndarray) -> np.ndarray:
    gaps = np.diff(levels)
    nearest = np.minimum(np.r_[gaps[:1], gaps], np.r_[gaps, gaps[-1:]])
    out = [round(float(v), -math.floor(math.log10(g))) for v, g in zip(levels, nearest)]
    return np.unique(out)


def level_texts(levels: np.ndarray) -> list[str]:
    """Each level written with the fewest significant digits that give back its value, so two
    different levels never share a text (``arange(0.1, 10, 0.5)``: 0.1, 0.6, ..., 9.6)."""
    return [_text(float(v)) for v in levels]


def _text(value: float) -> str:
    if value == 0:
        return "0"
    for digits in range(1, 16):
        if math.isclose(float(f"{value:.{digits}g}"), value, rel_tol=1e-9):
            break
    magnitude = math.floor(math.log10(abs(value)))
    if -4 <= magnitude < 5:  # plain decimals; beyond, powers of ten
        return f"{value:.{max(0, digits - 1 - magnitude)}f}"
    return f"{value:.{digits}g}"


def line_colours(count: int, cmap: str | Colormap = "viridis") -> list:
    """One colour per contour line, darker to lighter with the level (the lightest, near white
    in most maps, is left out so every line shows on white)."""
    return list(matplotlib.colormaps[cmap](np.linspace(0.0, 0.85, max(count, 1))))
