"""cli/args.py: range parsing and the flag groups shared by the programs."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import BASE, assert_usage_error, run_script

from loss_landscape_toolkit.cli import args as cli
from loss_landscape_toolkit.errors import RangeError, UsageError


@pytest.mark.parametrize("text, expected", [
    ("-1:1:51", (-1.0, 1.0, 51)),
    ("0:1:51", (0.0, 1.0, 51)),       # the reference rejected any 0
    ("-0.5:1.5:401", (-0.5, 1.5, 401)),
    ("-1:1:51.0", (-1.0, 1.0, 51)),   # float num, as old scripts wrote it
    ("0:0:1", (0.0, 0.0, 1)),
    ("-1e-3:2e-3:3", (-0.001, 0.002, 3)),
])
def test_valid_ranges(text, expected):
    r = cli.parse_range(text, "--x")
    assert r.as_tuple() == expected
    assert len(r.coordinates()) == expected[2]
    np.testing.assert_allclose(r.coordinates()[[0, -1]], expected[:2])


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"), ("  ", "empty"), (None, "empty"),
    ("-1:1", "2 field"), ("-1:1:5:3", "4 field"),
    ("a:1:5", "not three numbers"), ("-1:1:5.5", "whole number"), ("-1:1:0", "whole number"),
    ("1:-1:5", "smaller than max"), ("1:1:5", "smaller than max"), ("0:1:1", "min == max"),
    ("-1:inf:5", "finite"), ("nan:1:5", "finite"),
])
def test_malformed_ranges(text, fragment):
    with pytest.raises(RangeError, match=fragment) as info:
        cli.parse_range(text, "--y")
    assert "--y" in str(info.value) and "\n" not in str(info.value)


def test_parser_errors_are_usage_errors():
    parser = cli.ArgumentParser(prog="x.py")
    cli.add_direction_args(parser)
    with pytest.raises(UsageError, match="invalid choice"):
        parser.parse_args(["--xnorm", "filtre"])
    args = parser.parse_args(["--xnorm", ""])  # the reference's spelling of "none"
    assert cli.norm_choice(args.xnorm) == "none"


def test_flag_definitions_import_neither_torch_nor_h5py():
    """--help and bad flags are answered without loading the heavy libraries."""
    code = ("import sys; import loss_landscape_toolkit.cli.args as a; "
            "p = a.ArgumentParser('x.py'); a.add_parallel_args(p); a.add_data_args(p); a.add_model_args(p); "
            "a.add_direction_args(p); a.add_run_args(p); a.add_output_args(p, plot=True); p.format_help(); "
            "print(sorted(m for m in ('torch', 'h5py', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_says_where_the_default_data_path_is():
    parser = cli.ArgumentParser("x.py")
    cli.add_data_args(parser)
    text = " ".join(parser.format_help().split())
    assert "$LANDSCAPE_DATAPATH" in text and "cifar10/data in the working folder" in text
    assert "default: None" not in text  # a flag left unset is explained, not shown as None
    assert parser.parse_args([]).datapath is None


def _direction_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser("x.py")
    cli.add_direction_args(parser)
    return parser


@pytest.mark.parametrize("argv, given", [
    (["--x=-1:1:1000000000000"], "--x=-1:1:1000000000000 is 1e+12 points"),
    (["--x=-1:1:5", "--y=-1:1:1000000000000"], "--x=-1:1:5 x --y=-1:1:1000000000000 is 5e+12 points"),
    (["--x=-1:1:1000000", "--y=-1:1:1000000"], "--x=-1:1:1000000 x --y=-1:1:1000000 is 1e+12 points"),
    (["--x=-1:1:1e300", "--y=-1:1:1e300"], "is 1e+600 points"),
])
def test_grids_that_cannot_fit_are_refused_when_parsed(argv, given):
    with pytest.raises(RangeError, match="more than the .* of memory of this machine") as info:
        _direction_parser().parse_args(argv)
    text = str(info.value)
    assert given in text and ("TB" in text or "EB" in text), text
    assert "use fewer points" in text and "\n" not in text


def test_plot_surface_refuses_a_huge_grid_before_loading_anything(tmp_path):
    proc = run_script("plot_surface.py", *BASE, "--x=-1:1:1000000", "--y=-1:1:1000000", cwd=tmp_path)
    assert_usage_error(proc, "plot_surface.py: error: --x=-1:1:1000000 x --y=-1:1:1000000 is 1e+12 points",
                       "would need 184 TB, more than the")
    assert not list(tmp_path.iterdir())  # no data, direction or surface file


def test_grid_limit_is_the_machines_memory(monkeypatch):
    monkeypatch.setattr(cli, "physical_memory", lambda: 10**9)  # 1 GB: about 5.4 million points
    parser = _direction_parser()
    assert parser.parse_args(["--x=-1:1:2001", "--y=-1:1:2001"]).y == "-1:1:2001"  # 4 million points fit
    with pytest.raises(RangeError, match=r"is 9e\+06 points: .* would need 1.66 GB, more than the 1 GB .*"
                                         r"at most 5.43e\+06 in all"):
        parser.parse_args(["--x=-1:1:3000", "--y=-1:1:3000"])
    with pytest.raises(RangeError, match="finite"):  # the ranges themselves are checked at parse time too
        parser.parse_args(["--x=-1:inf:3"])


def test_sizes_are_written_for_people():
    assert [cli.format_bytes(n) for n in (0, 999, 1000, 190 * 10**6, 8 * 10**12, 10**600)] == [
        "0 B", "999 B", "1 kB", "190 MB", "8 TB", "1e+582 EB"]
    assert [cli.format_count(n) for n in (51, 999999, 10**12, 123456789)] == ["51", "999999", "1e+12", "1.23e+08"]
    assert cli.physical_memory() > 2**20


@pytest.mark.parametrize("argv, fragment", [
    (["--vmin", "5", "--vmax", "1"], "--vmin (5.0) must be smaller than --vmax (1.0)"),
    (["--vmin", "nan"], "must be finite"),
    (["--vlevel", "0"], "--vlevel (the contour spacing) must be > 0"),
    (["--vlevel", "1e-9"], "makes 9.9e+09 contour levels, more than 1000; raise --vlevel (--vlevel 0.495 gives 20)"),
    (["--vlevel", "5e-324"], "makes inf contour levels"),
    (["--dpi", "0"], "--dpi must be between 1 and 4800"),
    (["--dpi", "100000"], "--dpi must be between 1 and 4800"),
])
def test_level_and_dpi_flags_are_checked_when_parsed(argv, fragment):
    parser = cli.ArgumentParser("x.py")
    cli.add_level_args(parser.add_argument_group("plotting"))  # as plot_surface.py adds them
    cli.add_output_args(parser)
    with pytest.raises(RangeError) as info:
        parser.parse_args(argv)
    assert fragment in str(info.value)
    args = parser.parse_args(["--vmin", "0", "--vmax", "10", "--vlevel", "0.01", "--dpi", "4800"])  # 1000 levels
    assert (args.vlevel, args.dpi) == (0.01, 4800)
