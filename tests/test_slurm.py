"""The sbatch templates on a real SLURM cluster (CI starts a one-node one with
slurm/local_cluster.sh): results equal a one-process run; the templates as given fit one node;
a request the cluster can never run is refused by the submit scripts in one line."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import BASE, ROOT, run_cli

from loss_landscape_toolkit import h5io
from loss_landscape_toolkit.cli.modes import _slurm_advice


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


def _wait_for(job_id: str, folder: Path) -> None:
    """Block until ``job_id`` has ended (a no-op job that depends on it)."""
    subprocess.run(["sbatch", "--wait", f"--dependency=afterany:{job_id}", f"--chdir={folder}",
                    "--output=/dev/null", "--wrap", "true"], check=True, timeout=600)


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
    _wait_for(proc.stdout.split("merge job ")[1].split()[0], job)
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
    log = _sbatch(job, "plot_hessian_eigen.sbatch", *BASE, *args, options=[])  # as given: 2 tasks, 1 node
    assert "2 process(es)" in log and "max_eig/min_eig: 3/3 points done" in log, log
    expected = _arrays(single / "s.h5")
    for key in ("max_eig", "min_eig"):
        np.testing.assert_array_equal(_arrays(job / "s.h5")[key], expected[key])


def test_surface_template_as_given_runs_on_one_node_through_submit(tmp_path, one_process):
    """No resource options: the template's own request (1 node, 2 tasks) starts here and
    finishes; slurm/submit.sh checks it first and says which job it submitted."""
    args, expected = one_process
    job = tmp_path / "given"
    job.mkdir()
    env = {**os.environ, "PYTHON": sys.executable, "SBATCH_ARGS": f"--chdir={job} --output={job}/job.out"}
    proc = subprocess.run([str(ROOT / "slurm" / "submit.sh"), "plot_surface.sbatch", *BASE, *args], cwd=job,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("submitted job "), proc.stdout + proc.stderr
    _wait_for(proc.stdout.split()[2], job)
    log = (job / "job.out").read_text()
    assert "2 process(es)" in log and "rank 1:" in log, log
    for key, values in expected.items():
        np.testing.assert_array_equal(_arrays(job / "s.h5")[key], values)


def _sinfo(field: str) -> list[int]:
    out = subprocess.run(["sinfo", "-h", "-o", field], capture_output=True, text=True, timeout=30).stdout
    return [int(n.rstrip("+")) for n in out.split()]


def _jobs_named(name: str) -> str:
    return subprocess.run(["squeue", "-h", "-n", name, "-o", "%i %T %r"], capture_output=True, text=True,
                          timeout=30).stdout.strip()


@pytest.mark.parametrize("script", [["submit.sh", "plot_surface.sbatch"], ["submit.sh", "plot_hessian_eigen.sbatch"],
                                    ["submit_array.sh", "3"]])
def test_a_request_the_cluster_cannot_run_is_refused_in_one_line(tmp_path, script):
    """More nodes than exist (the MPI templates), more CPUs per task than a node has (the array:
    SLURM fits a one-task job on one node whatever --nodes says)."""
    name = f"refused-{uuid.uuid4().hex[:8]}"
    too_much = (f"--nodes={sum(_sinfo('%D')) + 1}" if script[0] == "submit.sh"
                else f"--cpus-per-task={max(_sinfo('%c')) + 1}")
    env = {**os.environ, "PYTHON": sys.executable,
           "SBATCH_ARGS": f"{too_much} --job-name={name} --chdir={tmp_path} --output=/dev/null"}
    try:
        proc = subprocess.run([str(ROOT / "slurm" / script[0]), *script[1:], "--x=-1:1:3"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and proc.stdout == "", proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: this cluster cannot run the job"), lines
        assert _jobs_named(name) == ""  # nothing left pending
    finally:
        subprocess.run(["scancel", "-n", name], timeout=30)


def test_a_job_pending_for_a_reason_no_wait_fixes_is_cancelled(tmp_path):
    """What the scripts do after sbatch, for limits that --test-only does not see: SLURM's
    reason for a job that can never start (here more nodes than exist) ends it, in one line."""
    name = f"never-{uuid.uuid4().hex[:8]}"
    job_id = subprocess.run(["sbatch", "--parsable", f"--nodes={sum(_sinfo('%D')) + 1}", f"--job-name={name}",
                             f"--chdir={tmp_path}", "--output=/dev/null", "--wrap", "true"],
                            capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    try:
        proc = subprocess.run(["bash", "-c", f'. "{ROOT}/slurm/schedulable.sh"; check_pending {job_id}; echo waiting'],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and proc.stdout == "", proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and f"job {job_id} can never start" in lines[0] and "cancelled" in lines[0], lines
        assert "PENDING" not in _jobs_named(name)
    finally:
        subprocess.run(["scancel", job_id], timeout=30)


def test_estimate_advises_ranks_and_time_limits():
    """--estimate's last lines: 2601 points of 2 s on GPUs (87 min on one)."""
    text = _slurm_advice(2601 * 2.0, 2601, on_gpu=True)
    assert text.splitlines()[0] == "estimate: with 4 GPUs: ~21.7 min (sbatch --nodes=1 --ntasks=4 --gpus-per-task=1)"
    assert "under 1 h: --ntasks=2 (~43.4 min; --time=01:16:00)" in text  # 1.5 x 43.4 min + 10 min
    assert "under 4 h: --ntasks=1 (~86.7 min; --time=02:21:00)" in text
    # more ranks than points do not help; a long job gets days in --time
    text = _slurm_advice(20 * 5000.0, 20, on_gpu=False)
    assert "under 1 h: --ntasks=20 (~83.3 min, the most that helps" in text and "4 CPU ranks" in text
    assert "--time=1-12:10:00" in _slurm_advice(3 * 86400.0, 3, on_gpu=True)  # 1.5 days + 10 min
