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
from conftest import BASE, ROOT, SLOW_MODEL, assert_usage_error, run_cli, run_script

from loss_landscape_toolkit import h5io
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
