"""plot_hessian_eigen.py end to end: eigenvalues against a dense Hessian, MPI, resume after
kill -9, the centre extras, re-plotting, and refusals. (The numerics are in test_hessian.py.)"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import BASE, ROOT, SLOW_MODEL, TINY_MODEL, assert_usage_error, run_cli, run_script

from loss_landscape_toolkit import h5io
from loss_landscape_toolkit._files import writer_lock
from loss_landscape_toolkit.h5io import EIG

SCRIPT = "plot_hessian_eigen.py"
# 29 digits images; float32 products (their float64 accuracy is tested in test_hessian.py; here
# the point is the wiring: the right point, parameters and normalization)
DATA = ["--data_split", "48"]


def _eig(cwd, *args, **kw):
    return run_cli(cwd, *DATA, *args, script=SCRIPT, **kw)


def _dense_extremes(checkpoint, dir_file, coords):
    """lambda_max, lambda_min of the dense float64 Hessian of the mean loss (weights with dim > 1)
    at theta* + a dx + b dy, computed here independently of hessian.py."""
    import tiny_model

    from loss_landscape_toolkit import data as dataloader

    data = dataloader.load_eval_data("digits", split="train", data_split=48)
    net = tiny_model.tiny().double().eval()
    net.load_state_dict(torch.load(checkpoint)["state_dict"])
    dirs = h5io.read_direction_file(dir_file).directions
    params = dict(net.named_parameters())
    with torch.no_grad():
        for p, *ds in zip(params.values(), *dirs):
            p.add_(sum(c * torch.from_numpy(d).double() for c, d in zip(coords, ds)))
    chosen = [n for n, p in params.items() if p.dim() > 1]
    fixed = {n: p.detach() for n, p in params.items() if n not in chosen}
    shapes = [params[n].shape for n in chosen]
    flat = torch.cat([params[n].detach().reshape(-1) for n in chosen])
    x, y = data.x.double(), data.y

    def loss(vector):
        weights, start = {}, 0
        for name, shape in zip(chosen, shapes):
            weights[name] = vector[start:start + shape.numel()].view(shape)
            start += shape.numel()
        return F.cross_entropy(torch.func.functional_call(net, {**fixed, **weights}, (x,)), y)

    dense = torch.func.hessian(loss)(flat)
    eigs = torch.linalg.eigvalsh(dense)
    return float(eigs[-1]), float(eigs[0])


@pytest.mark.mpi
def test_eigenvalues_match_a_dense_hessian_and_mpi_equals_one_process(tmp_path, checkpoint):
    args = ["--model_file", checkpoint.name, "--x=-0.5:0.5:3", "--y=-0.5:0.5:2", "--surf_file", "s.h5",
            "--no_warm_start", "--tol", "1e-5"]
    (tmp_path / "mpi").mkdir()
    (tmp_path / "mpi" / checkpoint.name).write_bytes(checkpoint.read_bytes())
    proc = _eig(tmp_path, *args)
    assert "max_eig/min_eig: 6/6 points done" in proc.stdout and "HVPs per point" in proc.stdout
    _eig(tmp_path / "mpi", *args, nproc=2)
    one, two = (h5io.read_surface_file(str(p / "s.h5")) for p in (tmp_path, tmp_path / "mpi"))
    assert one.done_mask(EIG).all() and (one.arrays["eig_hvps"] > 2).all()
    for key in ("max_eig", "min_eig"):
        np.testing.assert_array_equal(one.arrays[key], two.arrays[key])
    for iy, ix in ((0, 0), (1, 2)):
        hi, lo = _dense_extremes(checkpoint, tmp_path / one.dir_file, (one.xcoordinates[ix], one.ycoordinates[iy]))
        assert one.arrays["max_eig"][iy, ix] == pytest.approx(hi, rel=1e-3)
        assert one.arrays["min_eig"][iy, ix] == pytest.approx(lo, abs=1e-3 * abs(hi))
    proc = run_script("plot_2D.py", "-f", "s.h5", "--eig", "--format", "png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for suffix in ("_min_eig_max_eig_abs_ratio_heat_sns.png", "_min_eig_max_eig_ratio_heat_sns.png"):
        assert (tmp_path / f"s.h5{suffix}").stat().st_size > 1000


def test_centre_extras_figures_and_replot(tmp_path, checkpoint):
    proc = _eig(tmp_path, "--model_file", checkpoint.name, "--x=-0.5:0.5:3", "--surf_file", "s.h5",
                "--top_k", "3", "--trace_probes", "8", "--density_probes", "2", "--density_steps", "15",
                "--plot", "--format", "png")
    assert "top 3 eigenvalues" in proc.stdout and "trace (Hutchinson, 8 probes)" in proc.stdout
    centre = h5io.read_surface_file(str(tmp_path / "s.h5"))
    arrays, attrs = centre.groups["hessian_centre"]
    assert arrays["top_eigenvalues"].shape == (3,) and np.all(np.diff(arrays["top_eigenvalues"]) <= 0)
    assert arrays["top_eigenvalues"][0] == pytest.approx(centre.arrays["max_eig"][1], rel=1e-4)
    assert attrs["trace_stderr"] > 0
    assert np.trapezoid(arrays["density"], arrays["density_grid"]) == pytest.approx(1, abs=0.02)
    for suffix in ("_1d_eig_abs_ratio.png", "_1d_eig_ratio.png", "_hessian_density.png"):
        assert (tmp_path / f"s.h5{suffix}").stat().st_size > 1000
        (tmp_path / f"s.h5{suffix}").unlink()
    proc = run_script("plot_1D.py", "-f", "s.h5", "--eig", "--format", "png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "s.h5_1d_eig_ratio.png").exists() and (tmp_path / "s.h5_hessian_density.png").exists()


def test_eigenvalues_join_the_loss_surface_file_and_settings_are_not_mixed(tmp_path, checkpoint):
    common = ["--model_file", checkpoint.name, "--x=-0.5:0.5:3", "--data_split", "48"]
    run_cli(tmp_path, *common)  # the loss surface, named like the reference
    proc = run_cli(tmp_path, *common, script=SCRIPT)
    surf = proc.stdout.split("surface file: ")[1].split(" (")[0]
    assert "(resuming)" in proc.stdout
    surface = h5io.read_surface_file(str(tmp_path / surf))
    assert {"train_loss", "max_eig", "min_eig"} <= set(surface.arrays)
    proc = run_script(SCRIPT, *BASE, *common, "--hessian_params", "all", cwd=tmp_path)
    assert_usage_error(proc, "params='dim>1'")


@pytest.mark.parametrize("args, fragment", [
    (["--tol", "0"], "--tol must be > 0"),
    (["--tol", "inf"], "--tol must be > 0 and < 1"),
    (["--tol", "1.5"], "--tol must be > 0 and < 1"),
    (["--maxiter", "0"], "--maxiter must be >= 1"),
    (["--density_steps", "0"], "--density_steps must be >= 1"),
    (["--top_k", "-1"], "--top_k must be >= 0"),
    (["--trace_probes", "1"], "at least 2 probes"),
    (["--eig_method", "arpack"], "invalid choice"),
    (["--same_dir"], "unrecognized arguments"),
])
def test_bad_input(tmp_path, args, fragment):
    assert_usage_error(run_script(SCRIPT, *BASE, "--x=-1:1:3", *args, cwd=tmp_path), fragment)


def test_kill_9_then_rerun_gives_the_uninterrupted_result(tmp_path, checkpoint):
    args = [*BASE, *DATA, "--model", SLOW_MODEL, "--model_file", checkpoint.name, "--x=-0.5:0.5:4",
            "--y=-0.5:0.5:3", "--surf_file", "s.h5", "--no_warm_start", "--flush_secs", "0.05"]
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / checkpoint.name).write_bytes(checkpoint.read_bytes())
    env = {**os.environ, "TINY_SLEEP": "0.001"}
    assert subprocess.run([sys.executable, str(ROOT / SCRIPT), *args], cwd=clean, env=env,
                          capture_output=True, timeout=300).returncode == 0
    proc = subprocess.Popen([sys.executable, str(ROOT / SCRIPT), *args], cwd=tmp_path,
                            env={**os.environ, "TINY_SLEEP": "0.01"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        path = tmp_path / "s.h5"
        if path.exists():
            s = h5io.read_surface_file(str(path))
            if "max_eig" in s.arrays and s.done_mask(EIG).sum() >= 3:
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = h5io.read_surface_file(str(tmp_path / "s.h5")).done_mask(EIG).sum()
    assert 3 <= done < 12
    rerun = subprocess.run([sys.executable, str(ROOT / SCRIPT), *args], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and f"{done} were already done" in rerun.stdout, rerun.stderr
    a, b = (h5io.read_surface_file(str(p / "s.h5")) for p in (tmp_path, clean))
    for key in ("max_eig", "min_eig"):
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key])


# --------------------------------------------------------------------------- NaN/inf regions
# A tiny net whose output is multiplied by NaN where its fc weights are far from (far) or near
# (near) their initial values: the distance is |x| times their norm along a filter-normalized
# direction, so on --x=-1:1:5 "far" is NaN at x = -1 and 1, "near" at x = 0. Products there
# are NaN too (NaN times the output's derivative), as in a diverged region of a landscape.
PATCHY_MODEL = """
import math

import torch
from torch import nn


class PatchyNet(nn.Module):
    def __init__(self, near):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
        self.fc = nn.Linear(4, 10)
        self.start, self.near = self.fc.weight.detach().clone(), near

    def forward(self, x):
        out = self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))
        start = self.start.to(self.fc.weight)
        dist = (self.fc.weight - start).norm() / start.norm()
        bad = dist < 0.25 if self.near else dist > 0.75
        return out * torch.where(bad, torch.full_like(dist, math.nan), torch.ones_like(dist))


def far():
    return PatchyNet(near=False)


def near():
    return PatchyNet(near=True)
"""


def _patchy(tmp_path, kind):
    path = tmp_path / "patchy.py"
    path.write_text(PATCHY_MODEL)
    return f"{path}:{kind}"


def test_a_nan_region_is_stored_as_nan_counted_masked_and_not_redone(tmp_path):
    args = ["--model", _patchy(tmp_path, "far"), "--x=-1:1:5", "--surf_file", "s.h5"]
    proc = _eig(tmp_path, *args, "--plot", "--format", "png")
    assert "2 point(s) non-finite" in proc.stdout and "Traceback" not in proc.stderr
    surface = h5io.read_surface_file(str(tmp_path / "s.h5"))
    assert surface.done_mask(EIG).all()
    nan = np.array([True, False, False, False, True])
    for key in ("max_eig", "min_eig"):
        assert np.isnan(surface.arrays[key][nan]).all() and np.isfinite(surface.arrays[key][~nan]).all()
    assert (surface.arrays["max_eig"][~nan] > 0).all() and (surface.arrays["eig_hvps"][~nan] > 2).all()
    for suffix in ("_1d_eig_abs_ratio.png", "_1d_eig_ratio.png"):
        assert (tmp_path / f"s.h5{suffix}").stat().st_size > 1000
    rerun = _eig(tmp_path, *args)
    assert "computed 0 point(s)" in rerun.stdout and "5 were already done" in rerun.stdout
    assert "2 point(s) non-finite" in rerun.stdout


def test_a_nan_centre_gives_nan_centre_results_and_the_other_figures(tmp_path):
    proc = _eig(tmp_path, "--model", _patchy(tmp_path, "near"), "--x=-1:1:5", "--surf_file", "s.h5",
                "--top_k", "2", "--trace_probes", "3", "--density_probes", "1", "--density_steps", "5",
                "--plot", "--format", "png")
    assert "1 point(s) non-finite" in proc.stdout and "not finite" in proc.stdout
    surface = h5io.read_surface_file(str(tmp_path / "s.h5"))
    assert np.isnan(surface.arrays["max_eig"][2]) and np.isfinite(np.delete(surface.arrays["max_eig"], 2)).all()
    arrays, attrs = surface.groups["hessian_centre"]
    assert attrs["finite"] is False and np.isnan(arrays["top_eigenvalues"]).all()
    assert arrays["top_eigenvalues"].shape == (2,) and np.isnan(attrs["trace"]) and "density" not in arrays
    assert (tmp_path / "s.h5_1d_eig_ratio.png").stat().st_size > 1000
    assert not (tmp_path / "s.h5_hessian_density.png").exists()


# --------------------------------------------------------------------------- early refusals
FROZEN_MODEL = """
import sys

sys.path.insert(0, {fixtures!r})
import tiny_model


def frozen():
    net = tiny_model.tiny()
    net.conv.weight.requires_grad_(False)
    return net
"""


def _snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.glob("*.h5"))}


@pytest.mark.parametrize("model, args, fragment", [
    ("tiny", ["--top_k", "100000"], "--top_k 100000 is more than the 148 parameters"),
    ("tiny", ["--top_k", "167", "--hessian_params", "all"], "use --top_k 166 or fewer"),
    ("frozen", [], "--hessian_params dim>1: parameter conv.weight has requires_grad=False"),
])
def test_options_that_depend_on_the_model_are_refused_before_any_file_is_written(tmp_path, model, args,
                                                                                 fragment):
    spec = TINY_MODEL
    if model == "frozen":
        (tmp_path / "frozen.py").write_text(FROZEN_MODEL.format(fixtures=str(ROOT / "tests" / "fixtures")))
        spec = f"{tmp_path / 'frozen.py'}:frozen"
    proc = run_script(SCRIPT, *BASE, *DATA, "--model", spec, "--x=-0.5:0.5:3", *args, cwd=tmp_path)
    assert_usage_error(proc, fragment)
    assert proc.stdout == "" and _snapshot(tmp_path) == {}


def test_a_bad_top_k_leaves_an_existing_surface_file_unchanged(tmp_path, checkpoint):
    args = ["--model_file", checkpoint.name, "--x=-0.5:0.5:3", "--surf_file", "s.h5"]
    _eig(tmp_path, *args)
    before = _snapshot(tmp_path)
    proc = run_script(SCRIPT, *BASE, *DATA, *args, "--top_k", "149", cwd=tmp_path)
    assert_usage_error(proc, "--top_k 149 is more than the 148 parameters")
    assert proc.stdout == "" and _snapshot(tmp_path) == before


# --------------------------------------------------------------------------- writer lock
def test_centre_results_wait_for_no_one_else_writing_the_surface_file(tmp_path, checkpoint):
    """The centre results are written under the writer lock: a process that holds it from the
    moment the grid is done (it rewrote the file) makes the run stop with one line, the file as
    it was."""
    args = [*BASE, *DATA, "--model", SLOW_MODEL, "--model_file", checkpoint.name, "--x=-0.5:0.5:2",
            "--surf_file", "s.h5"]
    cmd = [sys.executable, str(ROOT / SCRIPT), *args]
    grid = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "TINY_SLEEP": "0"}, capture_output=True,
                          timeout=300)
    assert grid.returncode == 0, grid.stderr
    # every forward pass sleeps 0.3 s: the 8 trace probes take seconds after the grid's report
    proc = subprocess.Popen([*cmd, "--trace_probes", "8"], cwd=tmp_path, text=True,
                            env={**os.environ, "TINY_SLEEP": "0.3", "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("computed 0 point(s)"):  # the grid has released the lock
            break
    with writer_lock(str(tmp_path / "s.h5")):
        before = _snapshot(tmp_path)
        out, err = proc.communicate(timeout=300)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines) + out, err)
    assert_usage_error(done, "another process is writing", "s.h5")
    assert "Hessian at the centre" not in done.stdout and _snapshot(tmp_path) == before
