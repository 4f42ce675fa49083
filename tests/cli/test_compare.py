"""compare_surfaces.py: the numbers of several surface files side by side, checked on bowls whose
widths, curvatures and eigenvalue ratios are known in closed form; bad input as one line and exit 2."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from conftest import assert_main_usage_error, assert_usage_error, run_script
from surface_files import write_pca_directions, write_surface

from loss_landscape_toolkit.cli import compare

X41 = np.linspace(-1, 1, 41)  # step 0.05: every basin below spans at least 4 steps


def _table(stdout: str) -> dict[str, dict[str, str]]:
    """The printed table as {label: {column: cell}} (columns are separated by 2+ spaces)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#  label"))
    header = re.split(r"\s{2,}", lines[start])
    rows = {}
    for line in lines[start + 1:]:
        if not re.match(r"^\d+\s", line):
            break
        cells = re.split(r"\s{2,}", line)
        assert len(cells) == len(header), (header, cells)
        rows[cells[1]] = dict(zip(header, cells))
    return rows


def _bowl(a: float, b: float, c: float = 0.3):
    return lambda x, y: c + a * x**2 + b * y**2


def _run(capsys, *argv: str) -> dict[str, dict[str, str]]:
    assert compare.main(list(argv)) == 0
    out = capsys.readouterr().out
    return _table(out)


def test_each_row_shows_the_widths_and_curvatures_of_its_own_file(tmp_path, capsys):
    wide = write_surface(tmp_path / "wide.h5", X41, X41, _bowl(2, 0.5))
    sharp = write_surface(tmp_path / "sharp.h5", X41, X41, _bowl(8, 2))
    rows = _run(capsys, "-f", wide, sharp, "--labels", "wide", "sharp")
    for label, (a, b) in (("wide", (2, 0.5)), ("sharp", (8, 2))):
        row = rows[label]
        assert float(row["centre"]) == pytest.approx(0.3)
        # L = c + a x^2 + b y^2: widths 2 sqrt(0.1 / a), 2 sqrt(0.1 / b); curvatures 2a, 2b
        assert float(row["width x"]) == pytest.approx(2 * math.sqrt(0.1 / a), rel=0.01)
        assert float(row["width y"]) == pytest.approx(2 * math.sqrt(0.1 / b), rel=0.01)
        assert float(row["d2/dx2"]) == pytest.approx(2 * a, rel=1e-3)
        assert float(row["d2/dy2"]) == pytest.approx(2 * b, rel=1e-3)
        # fraction under the level ~ ellipse area pi 0.1 / sqrt(ab) over the grid's area 4
        assert float(row["under level"].rstrip("%")) == pytest.approx(100 * math.pi * 0.1 / math.sqrt(a * b) / 4,
                                                                      rel=0.1)
        assert row["done"] == "1681/1681"


def test_a_sharper_bowl_reads_sharper(tmp_path, capsys):
    files = [write_surface(tmp_path / f"{k}.h5", X41, X41, _bowl(k, k)) for k in (1, 4)]
    rows = _run(capsys, "-f", *files, "--labels", "flat", "sharp")
    flat, sharp = rows["flat"], rows["sharp"]
    for axis in "xy":
        assert float(sharp[f"width {axis}"]) < 0.6 * float(flat[f"width {axis}"])  # 1/2 the width
        assert float(sharp[f"d2/d{axis}2"]) > 3 * float(flat[f"d2/d{axis}2"])  # 4 times the curvature
    assert float(sharp["under level"].rstrip("%")) < float(flat["under level"].rstrip("%")) / 3


def test_bounds_are_marked_and_explained(tmp_path, capsys):
    # a basin wider than the grid (a lower bound) and one under 4 steps across (an upper bound)
    shallow = write_surface(tmp_path / "shallow.h5", X41, None, lambda x: 0.2 + 0.01 * x**2)
    narrow = write_surface(tmp_path / "narrow.h5", np.linspace(-1, 1, 11), None, lambda x: 0.2 + 20 * x**2)
    assert compare.main(["-f", shallow, narrow, "--labels", "shallow", "narrow"]) == 0
    out = capsys.readouterr().out
    rows = _table(out)
    assert rows["shallow"]["width x"] == ">= 2"
    assert rows["narrow"]["width x"] == "<= 0.4"  # the grid points -0.2 and 0.2 are above the level
    assert rows["narrow"]["d2/dx2"].endswith(" *")  # one step leaves the basin: a secant
    assert "width y" not in rows["shallow"]  # 1D files only: no y columns at all
    assert ">= the interval reaches the grid edge" in out and "<= the basin spans under 4 grid steps" in out
    assert "* the fit window leaves the basin" in out


def test_no_bound_notes_when_every_number_is_measured(tmp_path, capsys):
    wide = write_surface(tmp_path / "wide.h5", X41, X41, _bowl(2, 0.5))
    assert compare.main(["-f", wide]) == 0
    out = capsys.readouterr().out
    assert "lower bound" not in out and "upper bound" not in out and "secant" not in out
    assert _table(out)["wide.h5"]["width x"] == f"{2 * math.sqrt(0.05):.3g}"  # default label: the file name


def test_1d_and_2d_files_side_by_side(tmp_path, capsys):
    line = write_surface(tmp_path / "line.h5", X41, None, lambda x: 0.5 + 2 * x**2)
    plane = write_surface(tmp_path / "plane.h5", X41, X41, _bowl(2, 0.5))
    rows = _run(capsys, "-f", line, plane, "--labels", "line", "plane")
    assert rows["line"]["width y"] == rows["line"]["d2/dy2"] == rows["line"]["under level"] == "-"
    assert float(rows["line"]["width x"]) == pytest.approx(float(rows["plane"]["width x"]), rel=1e-6)
    assert float(rows["line"]["centre"]) == pytest.approx(0.5)


def test_hessian_ratio_at_the_centre_and_its_mean(tmp_path, capsys):
    # lambda_max = 2, lambda_min = -0.2 - x^2: |min/max| = 0.1 at the centre, 0.1 + x^2 / 2 elsewhere
    x = np.linspace(-1, 1, 5)
    eig = (lambda x, y: 2 + 0 * x, lambda x, y: -0.2 - x**2 + 0 * y)
    done = np.ones((5, 5), dtype=bool)
    done[0, 0] = False  # one point still missing
    hess = write_surface(tmp_path / "hess.h5", x, x, _bowl(1, 1), eig=eig, eig_done=done)
    rows = _run(capsys, "-f", hess, "--labels", "hess")
    ratio = np.abs(-0.2 - np.meshgrid(x, x)[0] ** 2) / 2
    assert float(rows["hess"]["|min/max| centre"]) == pytest.approx(0.1)
    assert rows["hess"]["width x"] == "<= 1"  # its loss columns too (0.63 wide: too few of 5 points to measure)
    # printed to 3 digits: 0.34, where the mean over all 25 points (the missing one counted) is 0.35
    assert float(rows["hess"]["|min/max| mean"]) == pytest.approx(ratio[done].mean(), rel=0.005)
    assert rows["hess"]["eig done"] == "24/25"


def test_a_file_with_only_hessian_maps_has_only_their_columns(tmp_path, capsys):
    x = np.linspace(-1, 1, 5)
    hess = write_surface(tmp_path / "eig.h5", x, x, eig=(lambda x, y: 4 + 0 * x, lambda x, y: -1 + 0 * y))
    assert compare.main(["-f", hess, "--labels", "eig"]) == 0
    out = capsys.readouterr().out
    row = _table(out)["eig"]
    assert "width x" not in row and "centre" not in row and row["|min/max| mean"] == "0.25"
    assert "widths" not in out  # no note about a level that no column uses


def test_delta_sets_the_level(tmp_path, capsys):
    wide = write_surface(tmp_path / "wide.h5", X41, X41, _bowl(2, 0.5))
    rows = _run(capsys, "-f", wide, "--labels", "w", "--delta", "0.4")
    assert float(rows["w"]["width x"]) == pytest.approx(2 * math.sqrt(0.4 / 2), rel=0.01)


def test_test_loss_is_compared_when_asked(tmp_path, capsys):
    surf = write_surface(tmp_path / "s.h5", X41, None, lambda x: 0.2 + x**2, test=True)  # test = train + 0.5
    rows = _run(capsys, "-f", surf, "--labels", "s", "--surf_name", "test_loss")
    assert float(rows["s"]["centre"]) == pytest.approx(0.7)


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    surf = write_surface(tmp_path / "s.h5", X41, None, lambda x: 0.2 + x**2)
    directions = write_pca_directions(tmp_path / "directions.h5")
    (tmp_path / "junk.h5").write_bytes(b"not an hdf5 file at all")
    main = compare.main
    assert_main_usage_error(capsys, main, ["-f", surf, str(tmp_path / "missing.h5")], "not found", "missing.h5")
    assert_main_usage_error(capsys, main, ["-f", surf, directions], "not a surface file", "direction file")
    assert_main_usage_error(capsys, main, ["-f", str(tmp_path / "junk.h5")], "cannot open", "junk.h5")
    assert_main_usage_error(capsys, main, ["-f", surf, "--surf_name", "test_loss"], "has no 'test_loss'",
                            "train_loss")
    assert_main_usage_error(capsys, main, ["-f", surf, surf, "--labels", "one"], "1 label(s) for 2 file(s)")
    assert_main_usage_error(capsys, main, [], "no surface file")
    assert_main_usage_error(capsys, main, ["-f", surf, "--delta", "0"], "--delta must be")


def test_the_checkout_program_runs_and_fails_cleanly(tmp_path):
    surf = write_surface(tmp_path / "s.h5", X41, None, lambda x: 0.2 + x**2)
    proc = run_script("compare_surfaces.py", "-f", surf, "--labels", "bowl", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"#1: {surf}"
    assert float(_table(proc.stdout)["bowl"]["d2/dx2"]) == pytest.approx(2, rel=1e-3)
    assert_usage_error(run_script("compare_surfaces.py", "-f", str(tmp_path / "nope.h5"), cwd=tmp_path),
                       "compare_surfaces.py: error:", "not found")
