"""Automatic ranges (--x=auto:N): the search for the basin's edges, the rounding and the parsing.

The end-to-end runs of plot_surface.py (files, resume, MPI) are in test_plot_surface.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import run_cli

from loss_landscape_toolkit import h5io
from loss_landscape_toolkit.cli import auto_range
from loss_landscape_toolkit.cli.args import AUTO_NUM, check_grid_fits, parse_range
from loss_landscape_toolkit.errors import RangeError, UsageError

MAX_EVALS_PER_SIDE = auto_range.BRACKET_STEPS + auto_range.BISECTIONS


def _counted(fn):
    calls = []

    def loss_at(alpha):
        calls.append(alpha)
        return fn(alpha)

    return loss_at, calls


@pytest.mark.parametrize("edge", [0.005, 0.03, 0.2, 0.7, 1.0, 3.0, 40.0, 250.0])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_edge_of_a_quadratic_basin_is_found_within_nine_percent(edge, sign):
    # loss = centre + rise at |alpha| = edge
    loss_at, calls = _counted(lambda a: 0.1 + (a / edge) ** 2)
    found, note = auto_range.find_edge(loss_at, sign, threshold=1.1, start=1.0)
    assert note == ""
    assert edge <= found <= edge * 2 ** (1 / 8) * (1 + 1e-12)
    assert len(calls) <= MAX_EVALS_PER_SIDE
    assert all(np.sign(a) == sign for a in calls)


def test_an_edge_nearer_than_the_probes_reach_is_the_nearest_probe():
    loss_at, calls = _counted(lambda a: 0.1 + (a / 1e-4) ** 2)
    found, note = auto_range.find_edge(loss_at, 1.0, threshold=1.1, start=1.0)
    assert found == 2.0 ** -(auto_range.BRACKET_STEPS - 1) and "already" in note
    assert len(calls) == auto_range.BRACKET_STEPS


def test_a_side_that_never_leaves_the_basin_stops_at_the_farthest_probe():
    loss_at, calls = _counted(lambda a: 0.0)
    found, note = auto_range.find_edge(loss_at, 1.0, threshold=1.0, start=1.0)
    assert found == 2.0 ** (auto_range.BRACKET_STEPS - 1) and "stays below" in note
    assert len(calls) == auto_range.BRACKET_STEPS


def test_nan_and_infinite_losses_are_outside_the_basin():
    assert auto_range.out_of_basin(math.nan, 1.0) and auto_range.out_of_basin(math.inf, 1.0)
    loss_at, _ = _counted(lambda a: math.nan if abs(a) >= 0.3 else 0.0)
    found, note = auto_range.find_edge(loss_at, -1.0, threshold=1.0, start=1.0)
    assert 0.3 <= found <= 0.3 * 2 ** (1 / 8) and note == ""


def test_probe_axis_finds_both_sides_of_a_lopsided_basin_and_grid_covers_them():
    # edges at -0.1 and +0.4: R = readable(1.5 * 0.4 .. 1.5 * 0.44) = 0.6 or 0.8
    probe = auto_range.probe_axis(lambda a: (a / 0.4) ** 2 if a > 0 else (a / 0.1) ** 2,
                                  flag="--x", asked="auto:20", centre=0.0, rise=1.0, start=1.0)
    lo, hi = probe.edges
    assert -0.1 * 2 ** (1 / 8) <= lo <= -0.1 and 0.4 <= hi <= 0.4 * 2 ** (1 / 8)
    assert len(probe.probes) <= 2 * MAX_EVALS_PER_SIDE
    grid = probe.grid(20)
    assert grid.num == 21 and grid.vmin == -grid.vmax and grid.vmax in (0.6, 0.8)
    assert 0.0 in grid.coordinates()


def test_default_rise_is_one_or_the_centre_loss():
    assert auto_range.choose_rise(None, 0.01) == 1.0
    assert auto_range.choose_rise(None, 2.3) == 2.3
    assert auto_range.choose_rise(0.5, 2.3) == 0.5
    with pytest.raises(UsageError, match="--auto_rise"):
        auto_range.choose_rise(-1.0, 0.1)
    with pytest.raises(UsageError, match="loss at the centre is nan"):
        auto_range.choose_rise(None, math.nan)


@pytest.mark.parametrize("value,expected", [(0.03, 0.03), (0.031, 0.04), (0.26, 0.3), (1.0, 1.0), (1.01, 1.2),
                                            (8.49, 10.0), (0.00123, 0.0015), (17.0, 20.0), (2.2, 2.5)])
def test_readable_ceil(value, expected):
    assert auto_range.readable_ceil(value) == expected


@pytest.mark.parametrize("text,num", [("auto", AUTO_NUM), ("auto:21", 21), (" auto:20 ", 20), ("auto:2", 2),
                                      ("auto:51.0", 51)])
def test_auto_ranges_parse_with_their_count(text, num):
    grid = parse_range(text, "--x")
    assert grid.auto and grid.num == num
    with pytest.raises(ValueError, match="automatic range"):
        grid.coordinates()
    check_grid_fits(grid, grid, given="--x=auto --y=auto")  # the parse-time size check sees the count


@pytest.mark.parametrize("text", ["auto:1", "auto:x", "auto:3:4", "auto:", "auto:inf", "auto:2.5"])
def test_bad_auto_ranges_are_refused(text):
    with pytest.raises(RangeError, match="auto:num"):
        parse_range(text, "--y")


def test_grid_points_within_rounding_of_zero_are_zero():
    for text in ["-0.1:0.2:4", "-0.7:3.5:7"]:  # linspace misses 0 by 1e-17 and 1e-16
        grid = parse_range(text, "--x")
        plain = np.linspace(*grid.as_tuple())
        assert 0.0 not in plain and 0.0 in grid.coordinates()
        np.testing.assert_allclose(grid.coordinates(), plain, rtol=0, atol=1e-15)


def test_plot_hessian_eigen_takes_an_auto_range_too(tmp_path, checkpoint):
    proc = run_cli(tmp_path, "--model_file", checkpoint.name, "--data_split", "48", "--x=auto:3",
                   "--surf_file", "e.h5", script="plot_hessian_eigen.py")
    assert "--x=auto:3: the loss reaches" in proc.stdout
    surface = h5io.read_surface_file(str(tmp_path / "e.h5"))
    assert len(surface.xcoordinates) == 3 and surface.xcoordinates[1] == 0.0
    assert surface.attrs["auto_range"]["x"]["range"] == [surface.xcoordinates[0], surface.xcoordinates[-1], 3]
    assert np.isfinite(surface.arrays["max_eig"]).all()
