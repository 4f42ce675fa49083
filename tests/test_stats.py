"""The comparable numbers against their closed forms on analytic bowls, and metric selection."""
from __future__ import annotations

import math
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


def _width_tolerance(h: float, a: float) -> float:
    """Linear interpolation of a x^2 between nodes h apart lies at most a h^2 / 4 above the
    parabola; at the crossing x* = sqrt(delta / a) the slope is 2 a x*, so each end moves
    inwards by at most h^2 / (8 x*), the width by at most h^2 / (4 x*)."""
    return h * h / (4 * math.sqrt(DELTA / a))


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
        assert w.bounded
        assert exact - _width_tolerance(0.05, a) <= w.width <= exact + 1e-12, (axis, w, exact)
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
    assert exact - _width_tolerance(0.05, A) <= s.widths["x"].width <= exact + 1e-12
    assert s.fit.d2x == pytest.approx(2 * A, abs=1e-8) and s.fit.points == 7
    assert s.fit.radius == pytest.approx((0.15,))
    assert s.fraction_under is None and set(s.widths) == {"x"}


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
    assert wy.bounded and wy.width == pytest.approx(2 * math.sqrt(0.1 / 5), abs=0.5**2 / (4 * math.sqrt(0.02)))
    assert s.points_done == 54


def test_diverged_neighbour_and_missing_centre(tmp_path):
    x = np.linspace(-1, 1, 5)
    def loss(x):  # diverged right of the centre
        return np.where(x > 0.2, np.inf, x**2)
    s = surface_stats.surface_stats(h5io.read_surface_file(write_surface(tmp_path / "inf.h5", x, None, loss)))
    w = s.widths["x"]
    assert not w.bounded and w.right == 0.0 and w.left == pytest.approx(-0.5 * 0.1 / 0.25)
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
