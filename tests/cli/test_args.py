"""cli/args.py: range parsing and the flag groups shared by the programs."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

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
