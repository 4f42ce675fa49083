"""Contour levels, labels, colour bars and axes of the figures, checked on the matplotlib objects
drawn (the figures are kept as they are saved): levels from the data resolve the floor of the
basin, the reference's flags give exactly its levels, error maps use 0-100, colour bars span what
is drawn, labels are readable and apart, 1D axes are named with ticks apart."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from surface_files import write_projection, write_surface

from loss_landscape_toolkit import h5io, plotting
from loss_landscape_toolkit.plotting import _figures, contours, curves, trajectory
from loss_landscape_toolkit.plotting._levels import choose_levels, data_levels, level_texts

X51 = np.linspace(-1, 1, 51)
DPI = 60


def _grid(f, x=X51, y=X51) -> np.ma.MaskedArray:
    xx, yy = np.meshgrid(x, y)  # (ny, nx)
    return np.ma.masked_invalid(f(xx, yy))


def untrained(x, y):
    """A random network: loss about ln 10 = 2.3, nearly flat, a mild bowl."""
    return 2.3 + 0.3 * (x**2 + y**2)


def trained(x, y):
    """A trained network on filter-normalized directions: 0.01 at the centre, 1e4 in the corners."""
    return 0.01 + 1e4 * ((x**2 + y**2) / 2) ** 3


def _levels(f, name="train_loss", **flags):
    return choose_levels(_grid(f), name, **flags)[0]


# --------------------------------------------------------------------------- the level rule
@pytest.mark.parametrize("f, rise", [(untrained, 0.1), (trained, 1.0)])
def test_levels_from_the_data_resolve_the_floor_and_the_walls(f, rise):
    """The reference's arange(0.1, 10, 0.5) has no level in (2.3, 2.4] and one in (0.01, 1.01]."""
    z = _grid(f)
    lo, hi = float(z.min()), float(z.max())
    levels = _levels(f).values
    assert np.isfinite(levels).all() and (np.diff(levels) > 0).all()
    assert 15 <= len(levels) <= 25, levels
    assert ((levels > lo) & (levels <= lo + rise)).sum() >= 4, levels  # the floor of the basin
    assert ((levels > lo + rise) & (levels < hi)).sum() >= 6, levels  # and its walls
    assert levels[-1] < hi


def test_levels_ignore_nan_inf_and_outliers():
    values = trained(*np.meshgrid(X51, X51)).ravel()
    base = data_levels(values)
    np.testing.assert_array_equal(data_levels(np.r_[values, np.nan, np.inf, -np.inf]), base)
    diverged = values.copy()
    diverged[:20] = 1e30  # a few points where the loss blew up do not set the scale
    assert data_levels(diverged)[-1] < 1e5


def test_levels_are_rounded_and_their_texts_differ():
    for f in (untrained, trained):
        levels = _levels(f).values
        texts = level_texts(levels)
        assert len(set(texts)) == len(texts)
        assert all(len(t.replace(".", "").lstrip("0")) <= 5 for t in texts), texts  # short numbers
        np.testing.assert_allclose([float(t) for t in texts], levels, rtol=1e-9)  # and exact


def test_reference_levels_have_unclipped_texts():
    texts = level_texts(np.arange(0.1, 10, 0.5))
    assert texts[:3] == ["0.1", "0.6", "1.1"] and "2.6" in texts and "3.1" in texts and texts[-1] == "9.6"
    assert level_texts(np.array([0.0, 12000.0, 1e8, 2.5e-5])) == ["0", "12000", "1e+08", "2.5e-05"]


@pytest.mark.parametrize("flags, expected", [
    (dict(vmin=0.1, vmax=10, vlevel=0.5), np.arange(0.1, 10, 0.5)),
    (dict(vlevel=0.2), np.arange(0.1, 10, 0.2)),  # the reference's defaults for those left out
    (dict(vmin=1.0), np.arange(1.0, 10, 0.5)),
    (dict(vmax=3.0), np.arange(0.1, 3.0, 0.5)),
    (dict(vmin=2.3, vmax=2.6, vlevel=0.01), np.arange(2.3, 2.6, 0.01)),
])
def test_given_flags_give_exactly_the_reference_levels(flags, expected):
    levels = _levels(untrained, **flags)
    np.testing.assert_array_equal(levels.values, expected)
    assert levels.from_flags and (levels.norm.vmin, levels.norm.vmax) == (
        flags.get("vmin", 0.1), flags.get("vmax", 10))


def test_trajectory_rings_join_the_reference_levels_in_order():
    levels = choose_levels(_grid(trained), "train_loss", vmin=0.1, vmax=10, vlevel=0.5, rings=True)[0]
    np.testing.assert_array_equal(levels.values, np.r_[np.arange(0.1, 10, 0.5), np.logspace(1, 8, 8)])


@pytest.mark.parametrize("name", ["train_err", "test_acc"])
def test_error_and_accuracy_maps_use_0_to_100(name):
    levels = _levels(lambda x, y: 3 + 20 * (x**2 + y**2), name=name)
    assert levels.values[0] == 0 and levels.values[-1] == 100 and levels.percent
    assert (levels.norm.vmin, levels.norm.vmax) == (0, 100)
    loss = _levels(lambda x, y: 3 + 20 * (x**2 + y**2))
    assert loss.values[0] > 3 and not loss.percent  # the same values as a loss: from the data


# --------------------------------------------------------------------------- the figures
@pytest.fixture
def drawn(monkeypatch):
    """{path: Figure} of every figure saved during the test."""
    figs = {}
    real = _figures.save

    def keep(fig, base, **kwargs):
        path = real(fig, base, **kwargs)
        figs[path] = fig
        return path

    for module in (contours, curves, trajectory):
        monkeypatch.setattr(module, "save", keep)
    return figs


def _surface(tmp_path, f, name="s", **kwargs) -> h5io.SurfaceFile:
    return h5io.read_surface_file(write_surface(tmp_path / f"{name}.h5", X51, X51, f, **kwargs))


def _render(fig):
    FigureCanvasAgg(fig).draw()  # real text extents
    return fig.canvas.get_renderer()


def _overlap(texts, renderer) -> list[tuple[str, str]]:
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    return [(a, b) for (a, ba), (b, bb) in itertools.combinations(boxes, 2) if ba.overlaps(bb)]


@pytest.mark.parametrize("f", [untrained, trained])
def test_colour_bars_span_what_is_drawn(tmp_path, drawn, f):
    surface = _surface(tmp_path, f)
    line_path, filled_path, heat_path, surf_path = plotting.plot_2d_contour(surface, fmt="png", dpi=DPI)
    levels = _levels(f).values
    for path in (filled_path, heat_path):
        fig = drawn[path]
        assert len(fig.axes) == 2, path  # the map and its colour bar
        bar = fig.axes[0].collections[0].colorbar
        assert bar.norm.vmin == pytest.approx(levels[0]) and bar.norm.vmax == pytest.approx(levels[-1])
    fig = drawn[surf_path]
    ax3d, bar_ax = fig.axes
    z = _grid(f)
    drawn_range = (float(z.min()), float(levels[-1]))  # clipped at the highest level
    assert ax3d.get_zlim() == pytest.approx(drawn_range)
    assert bar_ax.get_ylim() == pytest.approx(drawn_range)


def test_error_map_figures_are_on_0_to_100(tmp_path, drawn):
    surface = _surface(tmp_path, lambda x, y: 0.1 + 0 * x, acc=lambda x, y: 99 - 60 * (x**2 + y**2) / 2)
    paths = plotting.plot_2d_contour(surface, surf_name="train_err", fmt="png", dpi=DPI)
    heat = drawn[paths[2]]
    assert heat.axes[1].get_ylim() == (0, 100) and "train_err (%)" in heat.axes[1].get_ylabel()
    filled = drawn[paths[1]].axes[0].collections[0]
    assert filled.levels[0] == 0 and filled.levels[-1] == 100
    ax3d, bar_ax = drawn[paths[3]].axes
    assert ax3d.get_zlim() == (0, 100) and bar_ax.get_ylim() == (0, 100)


def test_reference_flags_keep_their_meaning_in_the_figures(tmp_path, drawn):
    surface = _surface(tmp_path, trained)
    paths = plotting.plot_2d_contour(surface, vmin=0.1, vmax=10, vlevel=0.5, fmt="png", dpi=DPI)
    lines = drawn[paths[0]].axes[0].collections[0]
    expected = np.arange(0.1, 10, 0.5)
    np.testing.assert_array_equal(lines.levels, expected[expected > float(_grid(trained).min())])
    assert drawn[paths[2]].axes[1].get_ylim() == (0.1, 10)  # heat-map colours vmin..vmax
    assert drawn[paths[3]].axes[0].get_zlim()[1] == pytest.approx(10)  # 3D clipped at vmax


@pytest.mark.parametrize("f", [untrained, trained])
def test_contour_labels_are_readable_and_apart(tmp_path, drawn, f):
    surface = _surface(tmp_path, f)
    fig = drawn[plotting.plot_2d_contour(surface, fmt="png", dpi=DPI)[0]]
    ax = fig.axes[0]
    lines = ax.collections[0]
    labels = [t for t in ax.texts if t.get_text()]
    assert len(labels) >= 3
    values = [float(t.get_text()) for t in labels]
    for value in values:  # each text is its level, not a clipped or rounded version of it
        assert np.isclose(lines.levels, value, rtol=1e-9).sum() == 1, (value, lines.levels)
    texts = level_texts(lines.levels)
    assert len(set(texts)) == len(texts)  # no two levels would read the same
    renderer = _render(fig)
    assert _overlap(labels, renderer) == []
    frame = ax.get_window_extent(renderer)
    for t in labels:
        box = t.get_window_extent(renderer)
        assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), t.get_text()


def test_contour_lines_darken_towards_the_minimum(tmp_path, drawn):
    surface = _surface(tmp_path, trained)
    lines = drawn[plotting.plot_2d_contour(surface, fmt="png", dpi=DPI)[0]].axes[0].collections[0]
    rgb = np.asarray(lines.get_edgecolor())[:, :3]
    lightness = rgb @ [0.299, 0.587, 0.114]
    assert (np.diff(lightness) > 0).all()


def test_trajectory_contours_use_the_same_levels(tmp_path, drawn):
    surface = _surface(tmp_path, trained)
    t = np.linspace(0, 1, 6)
    proj = h5io.read_projection_file(write_projection(tmp_path / "p.h5", 0.8 * (1 - t), 0.3 * t))
    fig = drawn[plotting.plot_contour_trajectory(surface, proj, fmt="png", dpi=DPI)]
    lines = fig.axes[0].collections[0]
    z = _grid(trained)
    levels = _levels(trained).values
    np.testing.assert_array_equal(lines.levels, levels[(levels > z.min()) & (levels < z.max())])
    ref = drawn[plotting.plot_contour_trajectory(surface, proj, vmin=0.1, vmax=10, vlevel=0.5, fmt="png", dpi=DPI)]
    ref_levels = ref.axes[0].collections[0].levels
    assert {10.0, 100.0, 1000.0} <= set(ref_levels) and (np.diff(ref_levels) > 0).all()  # one set, in order
    rgb = np.asarray(ref.axes[0].collections[0].get_edgecolor())[:, :3]
    assert (np.diff(rgb @ [0.299, 0.587, 0.114]) > 0).all()


# --------------------------------------------------------------------------- 1D axes
def _tick_labels(ax, renderer):
    """The x tick labels drawn: those of ticks inside the axis limits."""
    lo, hi = sorted(ax.get_xlim())
    return [tick.label1 for tick in ax.xaxis.get_major_ticks()
            if lo <= tick.get_loc() <= hi and tick.label1.get_visible() and tick.label1.get_text()]


@pytest.mark.parametrize("settings, xlabel", [
    (None, "alpha"),
    ({"xnorm": "filter", "dir_file": ""}, "x (filter-normalized direction)"),
    ({"xnorm": "filter", "dir_file": "given.h5"}, "alpha"),  # a reused direction file: not known here
])
def test_1d_axes_are_named_and_ticks_apart(tmp_path, drawn, settings, xlabel):
    path = write_surface(tmp_path / "one.h5", X51, None, lambda x: 0.01 + 5 * x**2, test=True)
    surface = h5io.read_surface_file(path)
    if settings is not None:
        surface = dataclasses.replace(surface, attrs={**surface.attrs, "settings": settings})
    for fig_path in plotting.plot_1d_loss_err(surface, fmt="png", dpi=DPI):
        fig = drawn[fig_path]
        ax = fig.axes[0]
        assert ax.get_xlabel() == xlabel and ax.get_ylabel(), fig_path
        renderer = _render(fig)
        ticks = _tick_labels(ax, renderer)
        assert len(ticks) >= 3 and _overlap(ticks, renderer) == [], fig_path


def test_repeat_plot_axes(tmp_path, drawn):
    surfaces = [h5io.read_surface_file(write_surface(tmp_path / f"r{i}.h5", X51, None, lambda x, i=i: i * x**2))
                for i in (1, 2)]
    fig = drawn[plotting.plot_1d_loss_err_repeat(surfaces, out_base=str(tmp_path / "r"), fmt="png", dpi=DPI)]
    renderer = _render(fig)
    assert fig.axes[0].get_xlabel() == "alpha" and _overlap(_tick_labels(fig.axes[0], renderer), renderer) == []


def test_2d_axes_name_the_directions_when_the_file_does(tmp_path, drawn):
    surface = _surface(tmp_path, untrained)
    surface = dataclasses.replace(surface, attrs={**surface.attrs, "settings": {
        "xnorm": "filter", "ynorm": "layer", "dir_file": ""}})
    ax = drawn[plotting.plot_2d_contour(surface, fmt="png", dpi=DPI)[1]].axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x (filter-normalized direction)", "y (layer-normalized direction)")
