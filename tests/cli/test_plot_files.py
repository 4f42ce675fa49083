"""plot_1D.py and plot_2D.py as a user runs them: real processes (headless, with a hostile
MPLBACKEND), outputs and the printed numbers; bad input as one line and exit code 2."""
from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import assert_main_usage_error, assert_usage_error, run_script
from surface_files import write_pca_directions, write_projection, write_surface

from loss_landscape_toolkit import h5io, plotting
from loss_landscape_toolkit.cli import plot_1d as plot_1D
from loss_landscape_toolkit.cli import plot_2d as plot_2D

X9 = np.linspace(-1, 1, 9)
Y5 = np.linspace(-1, 1, 5)
HEADLESS = {"MPLBACKEND": "TkAgg", "DISPLAY": "", "WAYLAND_DISPLAY": ""}  # a GUI backend and no display


def _bowl(x, y):
    return 0.2 + 2 * x**2 + y**2


def test_plot_2d_headless_with_stats_and_show(tmp_path):
    surf = write_surface(tmp_path / "s.h5", X9, Y5, _bowl)
    proc = run_script("plot_2D.py", "-f", surf, "--format", "png", "--dpi", "50", "--show", "--save_stats",
                      cwd=tmp_path, env=HEADLESS)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    kinds = ("2dcontour", "2dcontourf", "2dheat", "3dsurface")
    assert lines[:4] == [f"{surf}_train_loss_{k}.png" for k in kinds]
    assert all(os.path.getsize(p) > 1000 for p in lines[:4])
    assert lines[4] == "train_loss: 0.2 at the centre (x, y)=(0, 0)"
    assert "fraction of the grid under 0.3" in proc.stdout and "principal curvatures 4, 2" in proc.stdout
    assert proc.stderr.strip().startswith("warning: --show: no display") and len(proc.stderr.splitlines()) == 1
    stored = h5io.read_surface_file(surf).attrs["stats_train_loss"]  # decoded from JSON
    assert stored["fit"]["d2x"] == pytest.approx(4) and stored["centre_value"] == pytest.approx(0.2)


def test_plot_2d_levels_come_from_the_data_unless_a_reference_flag_is_given(tmp_path, monkeypatch):
    surf = write_surface(tmp_path / "s.h5", X9, Y5, _bowl)
    seen = []
    monkeypatch.setattr(plotting, "plot_2d_contour", lambda surface, **kw: seen.append(kw) or [])
    assert plot_2D.main(["-f", surf]) == 0
    assert plot_2D.main(["-f", surf, "--vlevel", "0.2"]) == 0
    assert plot_2D.main(["-f", surf, "--vmin", "0.1", "--vmax", "10", "--vlevel", "0.5"]) == 0
    assert [(kw["vmin"], kw["vmax"], kw["vlevel"]) for kw in seen] == [
        (None, None, None), (None, None, 0.2), (0.1, 10, 0.5)]  # the library fills in 0.1 and 10
    text = " ".join(plot_2D.build_parser().format_help().split())
    assert "levels from the data" in text and "arange(vmin, vmax, vlevel), with 0.1, 10 and 0.5" in text


def test_plot_1d_process_and_overlay(tmp_path, capsys):
    one = write_surface(tmp_path / "one.h5", X9, None, lambda x: 0.3 + x**2, test=True)
    two = write_surface(tmp_path / "two.h5", X9, None, lambda x: 0.3 + 2 * x**2)
    proc = run_script("plot_1D.py", "-f", one, "--log", "--format", "svg", cwd=tmp_path, env=HEADLESS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:3] == [f"{one}_1d_loss_acc_log.svg", f"{one}_1d_train_loss_log.svg",
                                            f"{one}_1d_train_err.svg"]
    assert "train_loss: 0.3 at the centre x=(0)" in proc.stdout and "test_loss: 0.8" in proc.stdout
    assert "d2/dx2 2" in proc.stdout
    assert plot_1D.main(["-f", one, two, "--format", "png", "--dpi", "50"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"{one}_1d_loss_err_repeat.png" and os.path.isfile(out)


def test_plot_1d_prefix_and_sentinels(tmp_path, capsys):
    prefix = str(tmp_path / "m.t7_weights_xignore=biasbn_xnorm=filter")
    for idx in (1, 2):
        write_surface(f"{prefix}_idx={idx}.h5_[-1.0,1.0,9].h5", X9, None, lambda x, i=idx: i * x**2)
    assert plot_1D.main(["--prefix", prefix, "--idx_max", "3", "--format", "png", "--dpi", "50"]) == 0
    out = capsys.readouterr().out
    assert "no surface file for idx 3" in out and out.splitlines()[-1] == f"{prefix}_1d_loss_err_repeat.png"
    # -1 and 1 are the reference's "grid limits" sentinels; other values are limits
    assert plot_1D.main(["-f", f"{prefix}_idx=1.h5_[-1.0,1.0,9].h5", "--xmin", "-0.5", "--format", "png",
                         "--dpi", "50"]) == 0


def test_plot_2d_trajectory_modes(tmp_path, capsys):
    dirs = write_pca_directions(tmp_path / "directions.h5")
    proj = write_projection(f"{dirs}_proj_cos.h5", [0.8, 0.5, 0.2, 0.0], [0.3, 0.4, 0.2, 0.0],
                            epochs=[0, 100, 150, 300])
    surf = write_surface(tmp_path / "s.h5", X9, Y5, _bowl)
    args = ["--format", "png", "--dpi", "50"]
    assert plot_2D.main(["-f", surf, "--dir_file", dirs, "--proj_file", proj, "--decay_epochs", "150", *args]) == 0
    assert plot_2D.main(["--dir_file", dirs, "--proj_file", proj, *args]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{proj}_train_loss_2dcontour_proj.png", f"{proj}.png"]


def test_bad_input_in_a_real_process(tmp_path):
    dirs = write_pca_directions(tmp_path / "directions.h5")
    for script in ("plot_1D.py", "plot_2D.py"):
        assert_usage_error(run_script(script, "-f", dirs, cwd=tmp_path, env=HEADLESS),
                           f"{script}: error:", "is a direction file")
    assert_usage_error(run_script("plot_2D.py", "-f", "missing.h5", cwd=tmp_path, env=HEADLESS),
                       "surface file not found: missing.h5")


def test_bad_input(tmp_path, capsys):
    one = write_surface(tmp_path / "one.h5", X9, None, lambda x: x**2)
    two = write_surface(tmp_path / "two.h5", X9, Y5, _bowl, test=True)
    assert_main_usage_error(capsys, plot_2D.main, ["-f", two, "--surf_name", "val_loss"],
                      "no 'val_loss'; available: test_acc, test_err, test_loss, train_acc, train_err, train_loss")
    assert_main_usage_error(capsys, plot_2D.main, ["-f", one], "1D surface file", "plot_1D.py")
    assert_main_usage_error(capsys, plot_1D.main, ["-f", two], "2D surface file", "plot_2D.py")
    assert_main_usage_error(capsys, plot_2D.main, ["-f", two, "--format", "jpg"], "invalid choice: 'jpg'")
    assert_main_usage_error(capsys, plot_2D.main, ["-f", two, "--vlevel", "0"], "--vlevel")
    assert_main_usage_error(capsys, plot_2D.main, ["-f", two, "--decay_epochs", "150"], "add --proj_file")
    assert_main_usage_error(capsys, plot_2D.main, [], "nothing to plot")
    assert_main_usage_error(capsys, plot_1D.main, [], "no surface file")
    assert_main_usage_error(capsys, plot_1D.main, ["-f", one, "--prefix", "p"], "either --prefix or")
    assert_main_usage_error(capsys, plot_1D.main, ["--prefix", str(tmp_path / "none")], "no surface file for idx 1..10")
    assert_main_usage_error(capsys, plot_1D.main, ["-f", one, "--loss_max", "0"], "--loss_max")
    assert_main_usage_error(capsys, plot_1D.main, ["-f", one, "--bogus"], "unrecognized arguments: --bogus")
    assert_main_usage_error(capsys, plot_2D.main, ["--proj_file", one], "is not a projection file")
    assert not list(tmp_path.glob("*.pdf"))


@pytest.mark.parametrize("argv, fragment", [
    (["--xmin", "2", "--xmax", "-2"], "--xmin 2 must be smaller than --xmax -2 (-1 and 1 mean the grid's own limits)"),
    (["--xmin", "0.5", "--xmax", "0.5"], "--xmin 0.5 must be smaller than --xmax 0.5"),
    (["--xmin", "2"], "--xmin 2 leaves an empty x-axis from 2 to 1 (the grid spans -1 to 1)"),
    (["--xmax", "-2"], "--xmax -2 leaves an empty x-axis from -1 to -2"),
    (["--xmin", "nan"], "--xmin must be a finite number, got nan"),
    (["--xmax", "inf"], "--xmax must be a finite number, got inf"),
    (["--loss_max", "inf"], "--loss_max (the top of the loss axis) must be a finite number > 0, got inf"),
    (["--loss_max", "-1"], "--loss_max (the top of the loss axis) must be a finite number > 0"),
    (["--dpi", "100000"], "--dpi must be between 1 and 4800"),
])
def test_plot_1d_refuses_nonsensical_limits(tmp_path, capsys, argv, fragment):
    one = write_surface(tmp_path / "one.h5", X9, None, lambda x: x**2)
    assert_main_usage_error(capsys, plot_1D.main, ["-f", one, "--format", "png", *argv], fragment)
    assert_main_usage_error(capsys, plot_1D.main, ["-f", one, one, "--format", "png", *argv], fragment)  # overlay
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("argv, fragment", [
    (["--vlevel", "1e-9"], "makes 9.9e+09 contour levels, more than 1000; raise --vlevel"),
    (["--level", "nan"], "--level must be a finite number"),
    (["--level", "inf"], "--level must be a finite number"),
    (["--log", "--vmin", "-3", "--vmax", "-1"], "--log draws log10 of the 3D surface clipped at --vmax, so --vmax "
                                                "must be > 0, got -1"),
    (["--dpi", "-3"], "--dpi must be between 1 and 4800"),
])
def test_plot_2d_refuses_nonsensical_numbers(tmp_path, capsys, argv, fragment):
    two = write_surface(tmp_path / "two.h5", X9, Y5, _bowl)
    assert_main_usage_error(capsys, plot_2D.main, ["-f", two, "--format", "png", *argv], fragment)
    assert not list(tmp_path.glob("*.png"))


def test_plot_1d_limits_are_checked_against_the_grid(tmp_path, capsys):
    one = write_surface(tmp_path / "one.h5", X9, None, lambda x: 1 + x**2)
    wide = write_surface(tmp_path / "wide.h5", 3 * X9, None, lambda x: 1 + x**2)
    assert_main_usage_error(capsys, plot_1D.main, ["-f", one, "--xmin", "1.5"], "--xmin 1.5 leaves an empty x-axis")
    assert_main_usage_error(capsys, plot_1D.main, ["-f", one, wide, "--xmax", "-3"],
                            "from -3 to -3 (the grid spans -3 to 3)")
    assert plot_1D.main(["-f", wide, "--xmin", "1.5", "--format", "png", "--dpi", "40"]) == 0  # up to the grid's 3
    assert plot_1D.main(["-f", one, "--xmin", "0.5", "--format", "png", "--dpi", "40"]) == 0  # up to the grid's 1
    assert plot_1D.main(["-f", one, "--xmin", "-1", "--xmax", "-0.5", "--format", "png", "--dpi", "40"]) == 0
