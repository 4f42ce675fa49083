"""Figures rendered to real files and checked by their pixels: written with the reference's
names, not blank, the right way round on non-square grids, NaN/inf masked, one curve per
figure where the reference drew two; trajectories, Hessian ratios, old files, --show."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import matplotlib
import matplotlib.image as mpimg
import numpy as np
import pytest
from conftest import DATA
from surface_files import write_pca_directions, write_projection, write_surface

from loss_landscape_toolkit import h5io, plotting
from loss_landscape_toolkit._naming import repeat_files
from loss_landscape_toolkit.errors import FileFormatError, RangeError, UsageError
from loss_landscape_toolkit.plotting import _figures

DPI = 60  # small images keep the suite fast; the checks below hold at any resolution
X9 = np.linspace(-1, 1, 9)
Y5 = np.linspace(0, 2, 5)  # non-square: 9 x 5


def S(path) -> h5io.SurfaceFile:
    """A surface file as the plotting functions take it: read once."""
    return h5io.read_surface_file(str(path))


def P(path) -> h5io.ProjectionFile:
    return h5io.read_projection_file(str(path))


def V(dir_file):
    """The PC variance of a direction file, as the programs pass it."""
    return plotting.pc_variance(h5io.read_direction_extras(str(dir_file))) if dir_file else None


# --------------------------------------------------------------------------- pixel helpers
def _rgb(path) -> np.ndarray:
    return mpimg.imread(path)[..., :3]  # (H, W, 3) floats in [0, 1]


def _coloured(img) -> np.ndarray:
    """Pixels with a hue: data drawn with colour maps or coloured lines (axes and text are grey)."""
    return (img.max(-1) - img.min(-1)) > 0.15


def _pure(img, channel) -> np.ndarray:
    others = [c for c in range(3) if c != channel]
    return (img[..., channel] > 0.6) & (img[..., others] < 0.4).all(-1)


def _first_run(mask_1d) -> tuple[int, int]:
    idx = np.flatnonzero(mask_1d)
    breaks = np.flatnonzero(np.diff(idx) > 1)
    end = idx[breaks[0]] if len(breaks) else idx[-1]
    return int(idx[0]), int(end)


def _data_box(img, margin: int = 3) -> np.ndarray:
    """The coloured block of a heat map / filled contour: the first coloured run of the middle
    row (the colour bar lies right of it), then the coloured run of that block's middle column."""
    coloured = _coloured(img)
    c0, c1 = _first_run(coloured[img.shape[0] // 2])
    r0, r1 = _first_run(coloured[:, (c0 + c1) // 2])
    assert c1 - c0 > 50 and r1 - r0 > 50, (c0, c1, r0, r1)
    return img[r0 + margin:r1 - margin, c0 + margin:c1 - margin]


def _masked_pixels(img) -> int:
    """Pixels of the heat maps' masked colour (grey 0.8) inside grey blocks (not text edges)."""
    g = np.isclose(img, 0.8, atol=0.02).all(-1)
    inner = g[1:-1, 1:-1] & g[:-2, 1:-1] & g[2:, 1:-1] & g[1:-1, :-2] & g[1:-1, 2:]
    return int(inner.sum())


def _not_blank(path, min_coloured: float) -> None:
    assert _coloured(_rgb(path)).mean() > min_coloured, path


def _curve_columns(path, channel=2) -> float:
    """Share of the image's columns crossed by a pure blue (or red) curve."""
    return _pure(_rgb(path), channel).any(axis=0).mean()


# --------------------------------------------------------------------------- 2D
def test_2d_figures_names_formats_and_content(tmp_path):
    surf = write_surface(tmp_path / "s.h5", X9, Y5, lambda x, y: 0.5 + x**2 + (y - 1) ** 2)
    paths = plotting.plot_2d_contour(S(surf), fmt="png", dpi=DPI)
    assert paths == [f"{surf}_train_loss_{kind}.png" for kind in ("2dcontour", "2dcontourf", "2dheat", "3dsurface")]
    for path, min_coloured in zip(paths, (0.01, 0.3, 0.3, 0.03)):
        _not_blank(path, min_coloured)
    pdfs = plotting.plot_2d_contour(S(surf))  # default: pdf, same names
    assert pdfs == [p[:-4] + ".pdf" for p in paths]
    for path in pdfs:
        with open(path, "rb") as fh:
            assert fh.read(5) == b"%PDF-"
    svgs = plotting.plot_2d_contour(S(surf), surf_name="train_err", fmt="svg")
    assert svgs[0].endswith("_train_err_2dcontour.svg") and "<svg" in Path(svgs[0]).read_text()[:500]
    assert not list(tmp_path.glob("*.tmp-*"))


@pytest.mark.parametrize("axis", ["x", "y"])
def test_heat_map_and_filled_contours_follow_the_axis(tmp_path, axis):
    """A surface of x alone changes from left to right only (of y alone: bottom to top only),
    increasing towards the right (top), on a non-square grid."""
    f = (lambda x, y: 5 + 4 * x + 0 * y) if axis == "x" else (lambda x, y: 1 + 4 * y + 0 * x)
    surf = write_surface(tmp_path / "s.h5", X9, Y5, f)
    _, contourf, heat, _ = plotting.plot_2d_contour(S(surf), fmt="png", dpi=DPI)
    for path in (heat, contourf):
        box = _data_box(_rgb(path))  # (rows, cols, 3), row 0 at the top
        along, across = (1, 0) if axis == "x" else (0, 1)
        assert box.std(axis=across).max() < 0.02, path  # constant across the other axis
        ends = np.take(box, [0, -1], axis=along).mean(axis=across)  # (2, 3): first and last column (row)
        first, last = ends[0].sum(), ends[-1].sum()  # viridis and summer brighten with the value
        if axis == "x":
            assert last > first + 0.3, path  # high values on the right
        else:
            assert first > last + 0.3, path  # high values at the top (row 0)


def test_nan_inf_and_unfinished_points_are_masked(tmp_path):
    done = np.ones((5, 9), dtype=bool)
    done[0, 0] = False  # still -1 in the file: must not be drawn as -1
    def loss(x, y):
        return np.where((x > 0.6) & (y > 1.4), np.inf, np.where(x < -0.6, np.nan, 1 + x**2 + y))
    surf = write_surface(tmp_path / "s.h5", X9, Y5, loss, done=done)
    paths = plotting.plot_2d_contour(S(surf), fmt="png", dpi=DPI)
    for path in paths:
        _not_blank(path, 0.01)
    img = _rgb(paths[2])
    # 2 NaN columns of 5 cells, the inf corner cells and the unfinished point: 13 of 45 cells
    assert _masked_pixels(img) > 0.2 * _coloured(img).sum()
    clean = write_surface(tmp_path / "clean.h5", X9, Y5, lambda x, y: 1 + x**2 + y)
    assert _masked_pixels(_rgb(plotting.plot_2d_contour(S(clean), fmt="png", dpi=DPI)[2])) == 0


def _svg_numbers(path) -> list[float]:
    """The numbers written as text (tick labels) in an svg saved with svg.fonttype 'none'."""
    text = Path(path).read_text().replace("\u2212", "-")
    return [float(v) for v in re.findall(r">\s*(-?\d+(?:\.\d+)?)\s*<", text)]


def test_3d_surface_is_clipped_and_log(tmp_path):
    """Heights up to 40.5, clipped at --vmax 10: no tick beyond 10 (x and y end at 1);
    with log, log10 heights: ticks within [log10(0.5), 1]."""
    x = np.linspace(-1, 1, 9)
    surf = write_surface(tmp_path / "s.h5", x, x[:5] + 1, lambda x, y: 0.5 + 40 * x**2 + 0 * y)
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        plain = plotting.plot_2d_contour(S(surf), fmt="svg", vmax=10)[3]
        assert 9 <= max(_svg_numbers(plain)) <= 10
        unclipped = plotting.plot_2d_contour(S(surf), fmt="svg", vmax=50)[3]
        assert max(_svg_numbers(unclipped)) >= 40  # the check above can fail
        logged = plotting.plot_2d_contour(S(surf), fmt="svg", vmax=10, log=True)[3]
        assert max(_svg_numbers(logged)) <= 1 and "log10 train_loss" in Path(logged).read_text()
    assert logged == plain  # same name, as the reference
    _not_blank(plotting.plot_2d_contour(S(surf), fmt="png", dpi=DPI, log=True)[3], 0.03)


def test_given_levels_that_miss_the_values_fall_back_to_the_data(tmp_path, capsys):
    """The reference's loss levels on an accuracy (60..70 %): none lies inside, so a note and
    levels from the data; by default an accuracy gets its 0-100 scale and no note."""
    surf = write_surface(tmp_path / "s.h5", X9, Y5, lambda x, y: 1 + x**2 + y, acc=lambda x, y: 60 + 10 * x + y)
    paths = plotting.plot_2d_contour(S(surf), surf_name="train_acc", fmt="png", dpi=DPI, vmin=0.1, vmax=10, vlevel=0.5)
    assert "using levels from the data" in capsys.readouterr().out
    _not_blank(paths[0], 0.01)
    _not_blank(paths[1], 0.3)
    plotting.plot_2d_contour(S(surf), surf_name="train_acc", fmt="png", dpi=DPI)
    assert capsys.readouterr().out == ""


def test_constant_surface_does_not_crash(tmp_path):
    surf = write_surface(tmp_path / "s.h5", X9, Y5, lambda x, y: 2 + 0 * x)
    assert len(plotting.plot_2d_contour(S(surf), fmt="png", dpi=DPI)) == 4


def test_reference_file_plots(tmp_path):
    surf = str(tmp_path / "ref.h5")
    shutil.copy(DATA / "reference_resnet20_surface_5x5.h5", surf)
    paths = plotting.plot_surface_figures(S(surf), fmt="png", dpi=DPI)
    assert [p.rsplit("_", 1)[1] for p in paths] == ["2dcontour.png", "2dcontourf.png", "2dheat.png", "3dsurface.png"]
    for path, min_coloured in zip(paths, (0.002, 0.3, 0.3, 0.03)):  # few contour lines on this file
        _not_blank(path, min_coloured)


def test_bad_inputs(tmp_path):
    one_d = write_surface(tmp_path / "one.h5", X9, None, lambda x: x**2)
    two_d = write_surface(tmp_path / "two.h5", X9, Y5, lambda x, y: x + y)
    directions = write_pca_directions(tmp_path / "dirs.h5")
    with pytest.raises(FileFormatError, match="is a direction file"):
        plotting.plot_2d_contour(S(directions))
    with pytest.raises(UsageError, match="plot_1D.py"):
        plotting.plot_2d_contour(S(one_d))
    with pytest.raises(UsageError, match="plot_2D.py"):
        plotting.plot_1d_loss_err(S(two_d))
    with pytest.raises(UsageError, match=r"no 'val_loss'; available: train_acc, train_err, train_loss"):
        plotting.plot_2d_contour(S(two_d), surf_name="val_loss")
    with pytest.raises(RangeError, match="vlevel"):
        plotting.plot_2d_contour(S(two_d), vlevel=0)
    with pytest.raises(RangeError, match="vmin"):
        plotting.plot_2d_contour(S(two_d), vmin=5, vmax=1)
    with pytest.raises(UsageError, match="format"):
        plotting.plot_2d_contour(S(two_d), fmt="jpg")
    nothing = write_surface(tmp_path / "none.h5", X9, Y5, lambda x, y: x + y, done=np.zeros((5, 9), bool))
    with pytest.raises(UsageError, match=r"no computed finite values of train_loss \(0/45"):
        plotting.plot_2d_contour(S(nothing))
    flat = write_surface(tmp_path / "flat.h5", X9, np.array([0.0]), lambda x, y: x + y)
    with pytest.raises(UsageError, match="at least 2 points on each axis"):
        plotting.plot_2d_contour(S(flat))
    assert plotting.plot_surface_figures(S(flat)) == []
    assert not list(tmp_path.glob("*.pdf")) and not list(tmp_path.glob("*.png"))


# --------------------------------------------------------------------------- 1D
def test_1d_figures(tmp_path):
    surf = write_surface(tmp_path / "s.h5", np.linspace(-1, 2, 13), None, lambda x: 1.5 + x, test=True)
    paths = plotting.plot_1d_loss_err(S(surf), fmt="png", dpi=DPI)
    assert paths == [f"{surf}_1d_loss_acc.png", f"{surf}_1d_train_loss.png", f"{surf}_1d_train_err.png"]
    assert _curve_columns(paths[0], channel=2) > 0.5 and _curve_columns(paths[0], channel=0) > 0.5
    assert _curve_columns(paths[1]) > 0.5 and _curve_columns(paths[2]) > 0.5
    # the loss rises with x: its curve is lower (larger row index) on the left
    blue = _pure(_rgb(paths[1]), 2)
    cols = np.flatnonzero(blue.any(axis=0))
    def rows(some_cols):  # a thin anti-aliased line has no pure pixel in some columns
        return np.flatnonzero(blue[:, some_cols].any(axis=1)).mean()
    assert rows(cols[:5]) > rows(cols[-5:]) + 20
    logs = plotting.plot_1d_loss_err(S(surf), fmt="png", dpi=DPI, log=True, loss_max=10)
    assert logs[:2] == [f"{surf}_1d_loss_acc_log.png", f"{surf}_1d_train_loss_log.png"]
    assert _curve_columns(logs[1]) > 0.5
    assert plotting.plot_surface_figures(S(surf), fmt="png", dpi=DPI, log=True, loss_max=10) == logs


def test_1d_nan_inf_and_zero_on_log_axis(tmp_path):
    def loss(x):  # 0 at the centre
        return np.where(x > 0.5, np.inf, np.where(x < -0.7, np.nan, x**2))
    done = np.ones(9, dtype=bool)
    done[3] = False
    surf = write_surface(tmp_path / "s.h5", X9, None, loss, done=done)
    for log in (False, True):
        for path in plotting.plot_1d_loss_err(S(surf), fmt="png", dpi=DPI, log=log):
            assert _curve_columns(path) > 0.1, path


def test_repeat_overlay_with_our_names_and_the_reference_names(tmp_path):
    prefix = str(tmp_path / "model_300.t7_weights_xignore=biasbn_xnorm=filter")
    for idx in (1, 2, 4):
        write_surface(f"{prefix}_idx={idx}.h5_[-1.0,1.0,9].h5", X9, None, lambda x, i=idx: 0.3 + i * x**2, test=True)
    write_surface(f"{prefix}.h5_[-1.0,1.0,9].h5", X9, None, lambda x: x**2)  # idx 0, not asked for
    files, missing = repeat_files(prefix, 1, 4)
    assert [f.split("_idx=")[1][0] for f in files] == ["1", "2", "4"] and missing == [3]
    path = plotting.plot_1d_loss_err_repeat([S(f) for f in files], out_base=prefix, fmt="png", dpi=DPI)
    assert path == f"{prefix}_1d_loss_err_repeat.png"
    assert _curve_columns(path, 2) > 0.5 and _curve_columns(path, 0) > 0.5
    assert repeat_files(prefix, 0, 0)[0] == [f"{prefix}.h5_[-1.0,1.0,9].h5"]

    ref_prefix = str(tmp_path / "ref")  # the reference's own naming: prefix_{idx}.h5
    for idx in (1, 2):
        write_surface(f"{ref_prefix}_{idx}.h5", X9, None, lambda x: x**2)
    assert repeat_files(ref_prefix, 1, 2)[0] == [f"{ref_prefix}_1.h5", f"{ref_prefix}_2.h5"]

    write_surface(f"{prefix}_idx=1.h5_[-1.0,1.0,21].h5", np.linspace(-1, 1, 21), None, lambda x: x**2)
    with pytest.raises(UsageError, match="2 surface files for idx 1"):
        repeat_files(prefix, 1, 2)
    with pytest.raises(UsageError, match="no surface file for idx 5..6"):
        repeat_files(prefix, 5, 6)


# --------------------------------------------------------------------------- trajectories
@pytest.fixture
def pca_case(tmp_path):
    dirs = write_pca_directions(tmp_path / "directions.h5", ratio=(0.6034, 0.2511))
    t = np.linspace(0, 1, 11)
    proj = write_projection(f"{dirs}_proj_cos.h5", 0.8 * (1 - t), 0.5 * np.sin(3 * t), epochs=range(0, 301, 30))
    surf = write_surface(tmp_path / "surf.h5", X9, np.linspace(-0.5, 1, 7), lambda x, y: 0.2 + x**2 + 2 * y**2)
    return dirs, proj, surf


def test_trajectory_with_pc_variance(pca_case, tmp_path):
    dirs, proj, _ = pca_case
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text in the svg
        path = plotting.plot_trajectory(P(proj), pc_variance=V(dirs), fmt="svg")
    assert path == f"{proj}.svg"
    svg = Path(path).read_text()
    assert "1st PC: 60.34 %" in svg and "2nd PC: 25.11 %" in svg and "epoch 300" in svg
    png = plotting.plot_trajectory(P(proj), fmt="png", dpi=DPI)
    assert png == f"{proj}.png" and _coloured(_rgb(png)).mean() > 0.005


def test_contour_trajectory_marks_decay_epochs(pca_case, capsys):
    dirs, proj, surf = pca_case
    plain = plotting.plot_contour_trajectory(S(surf), P(proj), pc_variance=V(dirs), fmt="png", dpi=DPI)
    assert plain == f"{proj}_train_loss_2dcontour_proj.png"
    red_before = _pure(_rgb(plain), 0).sum()
    marked = plotting.plot_contour_trajectory(S(surf), P(proj), pc_variance=V(dirs), decay_epochs=[150, 240, 275],
                                              fmt="png", dpi=DPI)
    assert _pure(_rgb(marked), 0).sum() > red_before + 20
    assert "275 are not among the projected checkpoints" in capsys.readouterr().err
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        svg = plotting.plot_contour_trajectory(S(surf), P(proj), pc_variance=V(dirs), decay_epochs=[150], fmt="svg")
    text = Path(svg).read_text()
    assert "lr decay (epoch 150)" in text and "1st PC: 60.34 %" in text


def test_contour_trajectory_without_epochs_or_pcs(tmp_path, capsys):
    proj = write_projection(tmp_path / "p.h5", [0.5, 0.2, 0.0], [0.3, 0.1, 0.0])
    surf = write_surface(tmp_path / "s.h5", X9, Y5, lambda x, y: 1 + x**2 + y)
    path = plotting.plot_surface_figures(S(surf), proj=P(proj), fmt="png", dpi=DPI)
    assert path == [f"{proj}_train_loss_2dcontour_proj.png"]
    plotting.plot_contour_trajectory(S(surf), P(proj), decay_epochs=[1], fmt="png", dpi=DPI)
    assert "records no epochs" in capsys.readouterr().err


# --------------------------------------------------------------------------- Hessian
def test_eig_ratio_2d(tmp_path):
    done = np.ones((5, 9), dtype=bool)
    done[2, 3] = False
    surf = write_surface(tmp_path / "s.h5", X9, Y5, lambda x, y: x + y,
                         eig=(lambda x, y: 2 + 0 * x, lambda x, y: -0.1 - 0.5 * x**2 - 0 * y), eig_done=done)
    paths = plotting.plot_eig_ratio(S(surf), fmt="png", dpi=DPI)
    assert paths == [f"{surf}_min_eig_max_eig_abs_ratio_heat_sns.png", f"{surf}_min_eig_max_eig_ratio_heat_sns.png"]
    for path in paths:
        img = _rgb(path)
        cell = _coloured(img).sum() / 44  # pixels per heat-map cell
        assert 0.5 * cell < _masked_pixels(img) < 1.5 * cell, path  # the unfinished point
        _not_blank(path, 0.3)


def test_eig_ratio_1d_one_curve_per_figure(tmp_path):
    """The reference drew its second 1D ratio on top of the first; here each figure has one
    curve: any column crosses exactly one blue run."""
    surf = write_surface(tmp_path / "s.h5", np.linspace(-1, 1, 21), None, lambda x: x**2,
                         eig=(lambda x: 1 + 0 * x, lambda x: -0.1 - 0.5 * x**2))
    paths = plotting.plot_eig_ratio(S(surf), fmt="png", dpi=DPI)
    assert paths == [f"{surf}_1d_eig_abs_ratio.png", f"{surf}_1d_eig_ratio.png"]
    for path, cup in zip(paths, (True, False)):  # |r| = 0.1 + x^2 / 2 is a cup, r its mirror image
        blue = _pure(_rgb(path), 2)
        cols = np.flatnonzero(blue.any(axis=0))
        assert len(cols) > 0.5 * blue.shape[1]
        for c in cols[5:-5:10]:
            rows = np.flatnonzero(blue[:, c])
            assert (np.diff(rows) <= 2).all(), (path, c, rows)  # one curve, not two
        def row(c, blue=blue):  # row 0 is the top
            return np.flatnonzero(blue[:, c]).mean()
        centre, edges = row(cols[len(cols) // 2]), (row(cols[3]) + row(cols[-4])) / 2
        assert (centre > edges + 10) if cup else (centre < edges - 10), path


def test_eig_ratio_needs_eigenvalues(tmp_path):
    surf = write_surface(tmp_path / "s.h5", X9, Y5, lambda x, y: x + y)
    with pytest.raises(UsageError, match="no max_eig or min_eig .*plot_hessian_eigen.py"):
        plotting.plot_eig_ratio(S(surf))


def test_eig_ratio_of_only_nan_points_says_so(tmp_path):
    surf = write_surface(tmp_path / "s.h5", X9, Y5, lambda x, y: x + y,
                         eig=(lambda x, y: np.nan + x, lambda x, y: np.inf + y))
    with pytest.raises(UsageError, match="no finite eigenvalue pair .*all 45 computed point"):
        plotting.plot_eig_ratio(S(surf))


def test_hessian_density_is_not_drawn_for_a_non_finite_centre(tmp_path):
    """A centre whose loss is NaN stores NaN top-k eigenvalues and no density: the ratio maps
    are drawn (the NaN centre point masked), the density figure is not."""
    surf = write_surface(tmp_path / "s.h5", X9, None, lambda x: x**2,
                         eig=(lambda x: np.where(x == 0, np.nan, 1 + 0 * x), lambda x: -0.1 - 0.5 * x**2))
    h5io.write_surface_group(surf, h5io.HESSIAN_CENTRE, {"top_eigenvalues": np.full(3, np.nan)},
                             {"finite": False, "nonfinite": "the loss is nan at these weights",
                              "trace": np.nan, "trace_stderr": np.nan})
    paths = plotting.plot_hessian_figures(S(surf), fmt="png", dpi=DPI)
    assert paths == [f"{surf}_1d_eig_abs_ratio.png", f"{surf}_1d_eig_ratio.png"]
    assert not Path(f"{surf}_hessian_density.png").exists()


# --------------------------------------------------------------------------- show
def test_show_without_display_saves_and_warns(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    surf = write_surface(tmp_path / "s.h5", X9, None, lambda x: x**2)
    paths = plotting.plot_1d_loss_err(S(surf), fmt="png", dpi=DPI, show=True)
    assert len(paths) == 3 and "warning: --show: no display" in capsys.readouterr().err


def test_show_with_a_display_shows_then_closes_every_figure(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(_figures, "_display_available", lambda: True)
    monkeypatch.setattr(plt, "show", lambda: shown.append(len(plt.get_fignums())))
    surf = write_surface(tmp_path / "s.h5", X9, Y5, lambda x, y: 1 + x**2 + y)
    paths = plotting.plot_2d_contour(S(surf), fmt="png", dpi=DPI, show=True)
    assert shown == [4] and plt.get_fignums() == []
    _not_blank(paths[2], 0.3)
