"""The sbatch templates on a real SLURM cluster (CI starts a one-node one with
slurm/local_cluster.sh): results equal a one-process run."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import BASE, ROOT, run_cli

from loss_landscape_toolkit import h5io


def _slurm_ready() -> bool:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    return state.returncode == 0 and any(s in state.stdout for s in ("idle", "mix"))


pytestmark = [pytest.mark.mpi, pytest.mark.skipif(
    not _slurm_ready(), reason="no SLURM here (sbatch missing or no idle node); "
                               "CI installs slurm-wlm and starts slurm/local_cluster.sh")]
EXPORT = f"--export=ALL,LANDSCAPE_HOME={ROOT},PYTHON={sys.executable}"


def _sbatch(folder: Path, template: str, *args: str, options: list[str]) -> str:
    """Submit ``template`` with ``args``, wait for the job, return its output (asserting success)."""
    out = folder / "job.out"
    cmd = ["sbatch", "--wait", EXPORT, f"--chdir={folder}", f"--output={out}", *options,
           str(ROOT / "slurm" / template), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    log = out.read_text() if out.exists() else ""
    assert proc.returncode == 0, proc.stdout + proc.stderr + log
    return log


def _arrays(path: Path) -> dict[str, np.ndarray]:
    return h5io.read_surface_file(str(path)).arrays


@pytest.fixture
def one_process(tmp_path, checkpoint) -> tuple[list[str], dict[str, np.ndarray]]:
    args = ["--model_file", str(checkpoint), "--x=-1:1:4", "--y=-1:1:3", "--surf_file", "s.h5"]
    single = tmp_path / "single"
    single.mkdir()
    run_cli(single, *args)
    return args, _arrays(single / "s.h5")


@pytest.mark.parametrize("ntasks", [2, 4])
def test_mpi_template_equals_one_process(tmp_path, one_process, ntasks):
    args, expected = one_process
    job = tmp_path / f"n{ntasks}"
    job.mkdir()
    log = _sbatch(job, "plot_surface.sbatch", *BASE, *args,
                  options=["--nodes=1", f"--ntasks={ntasks}", f"--ntasks-per-node={ntasks}", "--cpus-per-task=1"])
    assert f"{ntasks} process(es)" in log and f"rank {ntasks - 1}:" in log, log
    for key, values in expected.items():
        np.testing.assert_array_equal(_arrays(job / "s.h5")[key], values)


def test_array_template_then_merge_equals_one_process(tmp_path, one_process):
    args, expected = one_process
    job = tmp_path / "array"
    job.mkdir()
    env = {**os.environ, "PYTHON": sys.executable, "SBATCH_ARGS": f"--chdir={job}"}
    proc = subprocess.run([str(ROOT / "slurm" / "submit_array.sh"), "3", *BASE, *args], cwd=job,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "submitted array job" in proc.stdout, proc.stderr
    merge_job = proc.stdout.split("merge job ")[1].split()[0]
    subprocess.run(["sbatch", "--wait", f"--dependency=afterany:{merge_job}", f"--chdir={job}",
                    "--output=/dev/null", "--wrap", "true"], check=True, timeout=600)
    logs = "".join(p.read_text() for p in job.glob("*.out"))
    assert "merged 12 point value(s) from 3 of 3 shard files" in logs, logs
    for key, values in expected.items():
        np.testing.assert_array_equal(_arrays(job / "s.h5")[key], values)


def test_hessian_template_equals_one_process(tmp_path, checkpoint):
    # the same seeded start at every point, so the values do not depend on which rank took which
    args = ["--model_file", str(checkpoint), "--x=-1:1:3", "--surf_file", "s.h5", "--data_split", "48",
            "--no_warm_start"]
    single, job = tmp_path / "single", tmp_path / "job"
    single.mkdir()
    job.mkdir()
    run_cli(single, *args, script="plot_hessian_eigen.py")
    log = _sbatch(job, "plot_hessian_eigen.sbatch", *BASE, *args,
                  options=["--nodes=1", "--ntasks=2", "--ntasks-per-node=2", "--cpus-per-task=1"])
    assert "2 process(es)" in log and "max_eig/min_eig: 3/3 points done" in log, log
    expected = _arrays(single / "s.h5")
    for key in ("max_eig", "min_eig"):
        np.testing.assert_array_equal(_arrays(job / "s.h5")[key], expected[key])
