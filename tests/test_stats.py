"""The comparable numbers against their closed forms on analytic bowls, and metric selection."""
from __future__ import annotations

import math
import re
import shutil

import numpy as np
import pytest
from conftest import DATA
from surface_files import write_surface

from loss_landscape_toolkit import h5io
from loss_landscape_toolkit import stats as surface_stats
from loss_landscape_toolkit._files import writer_lock
from loss_landscape_toolkit.errors import FileFormatError, UsageError

A, B, C0, DELTA = 2.0, 0.5, 0.3, 0.1


def _bowl(x, y):
    return C0 + A * x**2 + B * y**2


@pytest.fixture
def bowl_2d(tmp_path):
    x = np.linspace(-1, 1, 41)  # h = 0.05, through 0
    y = np.linspace(-1.5, 1.5, 61)  # h = 0.05, non-square grid
    path = write_surface(tmp_path / "bowl.h5", x, y, _bowl)
    return h5io.read_surface_file(path)


def test_bowl_2d_matches_closed_forms(bowl_2d):
    s = surface_stats.surface_stats(bowl_2d, "train_loss")
    assert s.centre == (0.0, 0.0) and s.centre_value == pytest.approx(C0, abs=1e-12)
    for axis, a in (("x", A), ("y", B)):
        exact, w = 2 * math.sqrt(DELTA / a), s.widths[axis]
        assert w.bounded and w.resolved and s.warning is None
        assert w.width == pytest.approx(exact, rel=1e-9), (axis, w, exact)  # the parabola holds the bowl
        assert w.left == pytest.approx(-w.right)  # symmetric bowl
    # the quadratic model contains the bowl: the fit is exact up to rounding
    assert s.fit.d2x == pytest.approx(2 * A, abs=1e-8) and s.fit.d2y == pytest.approx(2 * B, abs=1e-8)
    assert s.fit.d2xy == pytest.approx(0, abs=1e-8)
    assert s.fit.principal == pytest.approx((2 * A, 2 * B), abs=1e-8)
    assert s.fit.points == 25 and s.fit.radius == pytest.approx((0.1, 0.1))


def test_bowl_2d_fraction_under_level(bowl_2d):
    """Grid points inside the ellipse a x^2 + b y^2 <= delta, each standing for an hx*hy cell,
    cover its area pi delta / sqrt(ab) up to the cells the boundary crosses: at most
    perimeter * cell diagonal, with perimeter <= 2 pi * (longest semi-axis)."""
    s = surface_stats.surface_stats(bowl_2d, "train_loss")
    nx, ny, h = 41, 61, 0.05
    assert s.level == pytest.approx(C0 + DELTA) and s.points_done == nx * ny
    assert s.fraction_under == s.points_under / (nx * ny)
    area = math.pi * DELTA / math.sqrt(A * B)
    boundary = 2 * math.pi * math.sqrt(DELTA / min(A, B)) * math.hypot(h, h)
    assert abs(s.points_under * h * h - area) <= boundary, (s.points_under * h * h, area, boundary)
    # an explicit level: all points under the grid's maximum
    assert surface_stats.surface_stats(bowl_2d, "train_loss", level=10).fraction_under == 1.0


def test_bowl_1d_and_fit_window(tmp_path):
    x = np.linspace(-2, 2, 81)  # h = 0.05
    surface = h5io.read_surface_file(write_surface(tmp_path / "b1.h5", x, None, lambda x: C0 + A * x**2))
    s = surface_stats.surface_stats(surface, "train_loss", fit_points=3)
    exact = 2 * math.sqrt(DELTA / A)
    assert s.widths["x"].width == pytest.approx(exact, rel=1e-9)
    # the window stays in the inner half of the basin: half-width 0.224, so 2 steps of 0.05
    assert s.fit.d2x == pytest.approx(2 * A, abs=1e-8) and s.fit.points == 5
    assert s.fit.radius == pytest.approx((0.1,))
    assert s.fraction_under is None and set(s.widths) == {"x"}
    wide = h5io.read_surface_file(write_surface(tmp_path / "b2.h5", x, None, lambda x: 0.1 * x**2))
    s = surface_stats.surface_stats(wide, "train_loss", fit_points=3)  # half-width 1: fit_points rules
    assert s.fit.points == 7 and s.fit.radius == pytest.approx((0.15,))


def test_cubic_term_does_not_change_the_curvature_at_the_centre(tmp_path):
    """On a window symmetric around the centre, x^3 is orthogonal to 1 and x^2: it changes the
    slope of the fit, not its curvature."""
    x = np.linspace(-1, 1, 21)
    surface = h5io.read_surface_file(write_surface(tmp_path / "c.h5", x, None, lambda x: x**2 + x**3))
    assert surface_stats.surface_stats(surface).fit.d2x == pytest.approx(2.0, abs=1e-9)


def test_open_regions_are_lower_bounds(tmp_path):
    x = np.linspace(-1, 1, 11)
    y = np.linspace(-1, 1, 5)
    done = np.ones((5, 11), dtype=bool)
    done[2, 7] = False  # not computed, on the x line through the centre, right of it
    surface = h5io.read_surface_file(
        write_surface(tmp_path / "open.h5", x, y, lambda x, y: 0.01 * x**2 + 5 * y**2, done=done))
    s = surface_stats.surface_stats(surface)
    wx, wy = s.widths["x"], s.widths["y"]
    assert not wx.bounded and wx.left == -1.0 and wx.right == pytest.approx(0.2)  # stops before the gap
    assert wy.bounded and wy.width == pytest.approx(2 * math.sqrt(0.1 / 5))
    assert wx.upper is None and wx.bracket == (None, None) and wy.bracket == (-0.5, 0.5)
    assert s.points_done == 54


def test_diverged_neighbour_and_missing_centre(tmp_path):
    x = np.linspace(-1, 1, 5)
    def loss(x):  # diverged right of the centre
        return np.where(x > 0.2, np.inf, x**2)
    s = surface_stats.surface_stats(h5io.read_surface_file(write_surface(tmp_path / "inf.h5", x, None, loss)))
    w = s.widths["x"]
    # right: stops at the centre; left: the parabola through x = -1, -0.5, 0 (x = 0.5 is inf)
    assert not w.bounded and w.right == 0.0 and w.left == pytest.approx(-math.sqrt(0.1))
    assert w.bracket == (-0.5, None) and not w.resolved and ">= 0.3162" in surface_stats.format_stats(s)
    done = np.array([1, 1, 0, 1, 1], dtype=bool)
    s = surface_stats.surface_stats(h5io.read_surface_file(
        write_surface(tmp_path / "hole.h5", x, None, lambda x: x**2, done=done)))
    assert s.centre_value is None and s.widths == {} and "not computed" in surface_stats.format_stats(s)


def test_too_few_points_for_the_fit(tmp_path):
    x, y = np.linspace(-1, 1, 2), np.linspace(-1, 1, 2)  # 4 points < 6 coefficients
    s = surface_stats.surface_stats(h5io.read_surface_file(
        write_surface(tmp_path / "tiny.h5", x, y, lambda x, y: x**2 + y**2)))
    assert s.fit is None and "too few" in surface_stats.format_stats(s)


def test_metrics_derived_error_and_masks(tmp_path):
    x, y = np.linspace(-1, 1, 3), np.linspace(0, 1, 2)
    done = np.array([[1, 1, 1], [1, 0, 1]], dtype=bool)
    surface = h5io.read_surface_file(write_surface(
        tmp_path / "m.h5", x, y, lambda x, y: x + y, acc=lambda x, y: 90 + x, test=True, done=done))
    err = surface_stats.get_metric(surface, "train_err")
    assert err.values[0].tolist() == pytest.approx([11, 10, 9]) and np.isnan(err.values[1, 1])
    assert not err.done[1, 1] and np.isnan(surface_stats.get_metric(surface, "test_loss").values[1, 1])
    assert "train_err" in surface_stats.available_metrics(surface)
    assert surface_stats.loss_names(surface) == ["train_loss", "test_loss"]
    with pytest.raises(UsageError, match="available: .*test_acc.*train_err.*train_loss"):
        surface_stats.get_metric(surface, "val_loss")


def test_reference_file_summary_and_save(tmp_path):
    """The reference's 5x5 file (no masks, no attributes) gets numbers; --save_stats stores
    them as JSON attributes, and is refused while a run writes the file."""
    path = str(tmp_path / "ref.h5")
    shutil.copy(DATA / "reference_resnet20_surface_5x5.h5", path)
    text = surface_stats.summarize(h5io.read_surface_file(path), save=True)
    assert text.startswith("train_loss: 2.2978 at the centre (x, y)=(0, 0)")
    assert "fraction of the grid under 2.3978: 64.00% (16/25" in text and "stored as attributes" in text
    stored = h5io.read_surface_file(path).attrs["stats_train_loss"]  # decoded from JSON
    again = surface_stats.surface_stats(h5io.read_surface_file(path)).as_dict()
    assert stored == again and stored["widths"]["x"]["bounded"] is False
    with writer_lock(path), pytest.raises(FileFormatError, match="another process"):
        surface_stats.save_stats(path, [])


def test_bad_parameters(bowl_2d):
    with pytest.raises(UsageError):
        surface_stats.surface_stats(bowl_2d, delta=0)
    with pytest.raises(UsageError):
        surface_stats.surface_stats(bowl_2d, fit_points=0)


# --------------------------------------------------------------------------- resolution
def _wall(t, left: float, right: float, m: float):
    """Quadratic walls around ``m``: ``left (t - m)^2`` below it, ``right (t - m)^2`` above."""
    return np.where(t < m, left, right) * (t - m) ** 2


def _ends(t0: float, left: float, right: float, m: float) -> tuple[float, float]:
    """Where ``_wall`` rises ``DELTA`` above its value at the centre ``t0``."""
    rise = float(_wall(np.float64(t0), left, right, m)) + DELTA
    return m - math.sqrt(rise / left), m + math.sqrt(rise / right)


def _width_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("  width under"))


def _printed_width(text: str, axis: str) -> float:
    match = re.search(rf"[:;] {axis} ([-+.\de]+) \[", _width_line(text))
    assert match, text
    return float(match.group(1))


WALLS = [  # left curvature, right curvature, minimum, grid range (21 points), offset
    (2.0, 2.0, 0.0, (-1, 1), 0.3),
    (0.5, 0.5, 0.0, (-1, 1), 0.0),
    (8.0, 8.0, 0.0, (-0.5, 0.5), 4.7),
    (50.0, 50.0, 0.0, (-0.2, 0.2), 0.3),
    (2.0, 2.0, 0.13, (-1, 1), 0.3),  # shifted minimum: the centre sits on a wall
    (1.0, 6.0, 0.0, (-1, 1), 0.3),  # asymmetric walls
    (3.0, 0.7, -0.08, (-0.8, 1.2), 2.0),  # both, on a grid not centred on 0
]


@pytest.mark.parametrize("axis", ["x", "y"])
@pytest.mark.parametrize("left, right, m, span, offset", WALLS)
def test_widths_on_quadratic_walls_at_21_points(tmp_path, axis, left, right, m, span, offset):
    """Stored and printed widths within 5% of the closed form (the parabola makes them exact)."""
    along, other = np.linspace(*span, 21), np.linspace(-1, 1, 21)
    def loss(x, y):
        t, u = (x, y) if axis == "x" else (y, x)
        return offset + _wall(t, left, right, m) + 0.5 * u**2  # the other axis: a wide bowl
    x, y = (along, other) if axis == "x" else (other, along)
    s = surface_stats.surface_stats(h5io.read_surface_file(write_surface(tmp_path / "w.h5", x, y, loss)))
    t0 = s.centre[0] if axis == "x" else s.centre[1]
    lo, hi = _ends(t0, left, right, m)
    w = s.widths[axis]
    assert w.bounded and w.resolved and s.warning is None, w
    assert (w.left, w.right) == pytest.approx((lo, hi), rel=1e-9, abs=1e-12)
    text = surface_stats.format_stats(s)
    assert "warning" not in text and "<=" not in _width_line(text)
    assert _printed_width(text, axis) == pytest.approx(hi - lo, rel=0.05)


def test_widths_and_curvature_of_a_quartic_bowl_at_21_points(tmp_path):
    """Not a quadratic: x^2 + x^4 and 0.2 y^2 + 0.05 y^4 on 21 points across [-1, 1]. Widths
    from the roots of a t^2 + q t^4 = delta; the curvature at the bottom is 2a."""
    g = np.linspace(-1, 1, 21)
    surface = h5io.read_surface_file(write_surface(
        tmp_path / "q.h5", g, g, lambda x, y: 0.3 + x**2 + x**4 + 0.2 * y**2 + 0.05 * y**4 + 0.1 * x * y))
    for fit_points in (2, 10):
        s = surface_stats.surface_stats(surface, fit_points=fit_points)
        for axis, a, q in (("x", 1.0, 1.0), ("y", 0.2, 0.05)):
            exact = 2 * math.sqrt((-a + math.sqrt(a * a + 4 * q * DELTA)) / (2 * q))
            assert s.widths[axis].resolved and s.widths[axis].width == pytest.approx(exact, rel=0.05)
            assert _printed_width(surface_stats.format_stats(s), axis) == pytest.approx(exact, rel=0.05)
        assert (s.fit.d2x, s.fit.d2y, s.fit.d2xy) == pytest.approx((2.0, 0.4, 0.1), rel=0.05)
        # however many steps are allowed, the window stays in the inner half of the basin
        assert s.fit.resolved and s.fit.radius[0] <= s.widths["x"].width / 4
        assert s.fit.radius[1] <= s.widths["y"].width / 4
    # a fit over the whole x line would read the walls, not the bottom
    assert 2 * np.polyfit(g, g**2 + g**4, 2)[0] > 1.5 * 2.0


@pytest.mark.parametrize("a, b, c, shift, offset", [
    (2.0, 0.5, 0.0, (0.0, 0.0), 0.3), (0.3, 0.3, 0.2, (0.0, 0.0), 0.0), (1.0, 4.0, -1.0, (0.05, -0.1), 3.0)])
def test_curvature_of_quadratics_at_21_points(tmp_path, a, b, c, shift, offset):
    g = np.linspace(-1, 1, 21)
    def loss(x, y):
        dx, dy = x - shift[0], y - shift[1]
        return offset + a * dx**2 + b * dy**2 + c * dx * dy
    s = surface_stats.surface_stats(h5io.read_surface_file(write_surface(tmp_path / "c.h5", g, g, loss)))
    hessian = np.array([[2 * a, c], [c, 2 * b]])
    assert (s.fit.d2x, s.fit.d2y, s.fit.d2xy) == pytest.approx((2 * a, 2 * b, c), rel=0.05, abs=1e-9)
    assert s.fit.principal == pytest.approx(tuple(np.linalg.eigvalsh(hessian)[::-1]), rel=0.05)


def test_coarse_grid_gives_bounds_and_a_warning(tmp_path):
    """0.3 + 2 x^2 + 8 y^2 on 5 x 5 points across [-1, 1]: the level is crossed within the
    first step (widths 0.447 and 0.224, step 0.5). The grid only shows that each width is at
    most 1; that is printed, with the warning and a rerun that does resolve the basin."""
    def loss(x, y):
        return 0.3 + 2 * x**2 + 8 * y**2
    g = np.linspace(-1, 1, 5)
    s = surface_stats.surface_stats(h5io.read_surface_file(write_surface(tmp_path / "c.h5", g, g, loss)))
    for w in s.widths.values():
        assert w.bounded and not w.resolved and w.upper == 1.0 and w.bracket == (-0.5, 0.5)
    assert not s.fit.resolved
    text = surface_stats.format_stats(s)
    assert "x <= 1 [-0.5, 0.5]" in text and "y <= 1 [-0.5, 0.5]" in text
    warning = [line for line in text.splitlines() if line.startswith("  warning: ")]
    assert len(warning) == 1 and "bounds, not estimates" in warning[0] and "secant" in warning[0]
    assert warning[0].endswith("e.g. --x=-0.5:0.5:21 --y=-0.5:0.5:21"), warning
    assert s.as_dict()["warning"] == s.warning and s.as_dict()["widths"]["x"]["resolved"] is False
    fine = np.linspace(-0.5, 0.5, 21)  # the suggested rerun
    s = surface_stats.surface_stats(h5io.read_surface_file(write_surface(tmp_path / "f.h5", fine, fine, loss)))
    assert s.warning is None and s.fit.resolved
    assert s.widths["x"].width == pytest.approx(2 * math.sqrt(0.05)) and s.widths["y"].width == pytest.approx(
        2 * math.sqrt(0.1 / 8))


def test_no_warning_on_a_fine_grid_of_a_wide_bowl(tmp_path):
    g = np.linspace(-1, 1, 21)
    s = surface_stats.surface_stats(h5io.read_surface_file(
        write_surface(tmp_path / "w.h5", g, g, lambda x, y: 0.3 + 0.5 * x**2 + 0.5 * y**2)))
    assert s.warning is None and all(w.resolved for w in s.widths.values()) and s.fit.resolved
    text = surface_stats.format_stats(s)
    assert "warning" not in text and "<=" not in _width_line(text) and "secant" not in text


def test_narrow_but_not_first_step_and_1d_warning(tmp_path):
    """A basin 3 steps across (crossings 1.5 steps out) is still too narrow; in 1D the rerun
    names x only, and keeps the point count when it is above 21."""
    x = np.linspace(-1, 1, 41)  # step 0.05, half-width 0.075
    s = surface_stats.surface_stats(h5io.read_surface_file(
        write_surface(tmp_path / "n.h5", x, None, lambda x: DELTA * (x / 0.075) ** 2)))
    w = s.widths["x"]
    assert w.width == pytest.approx(0.15) and not w.resolved and s.fit.resolved  # one step is inside
    assert s.warning.endswith("e.g. --x=-0.1:0.1:41") and "secant" not in s.warning
    assert "x <= 0.2 [-0.1, 0.1]" in surface_stats.format_stats(s)
