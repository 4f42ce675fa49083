"""Cluster behaviour without a scheduler: shards and merge, --estimate, a killed rank, a stalled
rank at start-up, and the run-mode flags. (Real SLURM is in test_slurm.py.)"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import BASE, DATA, MPIRUN, ROOT, SLOW_MODEL, TINY_MODEL, assert_usage_error, run_cli, run_script

from loss_landscape_toolkit import h5io
from loss_landscape_toolkit.h5io import TRAIN

GRID = ["--x=-1:1:4", "--y=-1:1:3", "--surf_file", "s.h5"]


def _copy_checkpoint(folder: Path, checkpoint: Path) -> None:
    folder.mkdir()
    (folder / checkpoint.name).write_bytes(checkpoint.read_bytes())


def test_shards_then_merge_equal_onerun_cli(tmp_path, checkpoint):
    args = ["--model_file", checkpoint.name, *GRID]
    _copy_checkpoint(tmp_path / "single", checkpoint)
    run_cli(tmp_path / "single", *args)
    shards = tmp_path / "shards"
    _copy_checkpoint(shards, checkpoint)
    proc = run_script("plot_surface.py", *BASE, *args, "--of", "3", "--merge", cwd=shards)  # nothing yet
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    assert "not complete: 12 of 12 points are still missing, from shard(s) [0, 1, 2] (shard files " \
           "missing: [0, 1, 2])" in proc.stderr
    for rank in range(3):
        proc = run_cli(shards, *args, "--rank", str(rank), "--of", "3")
        assert f"shard {rank} of 3" in proc.stdout and "computed 4 point(s)" in proc.stdout
    proc = run_cli(shards, *args, "--rank", "1", "--of", "3")  # a shard resumes on its own
    assert "computed 0 point(s)" in proc.stdout
    proc = run_cli(shards, *args, "--of", "3", "--merge")
    assert "merged 12 point value(s) from 3 of 3 shard files" in proc.stdout
    assert "not complete" not in proc.stdout
    merged = h5io.read_surface_file(str(shards / "s.h5"))
    single = h5io.read_surface_file(str(tmp_path / "single" / "s.h5"))
    assert merged.done_mask(TRAIN).all()
    for key in ("train_loss", "train_acc"):
        np.testing.assert_array_equal(merged.arrays[key], single.arrays[key])


def test_a_shard_started_after_a_partial_merge_still_computes_its_whole_share(tmp_path, checkpoint):
    args = [*BASE, "--model_file", checkpoint.name, "--x=-1:1:9", "--surf_file", "s.h5"]
    run_cli(tmp_path, *args[len(BASE):], "--rank", "0", "--of", "2")
    proc = run_script("plot_surface.py", *args, "--of", "2", "--merge", cwd=tmp_path)
    assert proc.returncode == 3 and "4 of 9 points are still missing, from shard(s) [1]" in proc.stderr
    proc = run_cli(tmp_path, *args[len(BASE):], "--rank", "1", "--of", "2")
    assert "computed 4 point(s)" in proc.stdout
    proc = run_cli(tmp_path, *args[len(BASE):], "--of", "2", "--merge")
    assert h5io.read_surface_file(str(tmp_path / "s.h5")).done_mask(TRAIN).all()


def test_shard_rank_from_a_slurm_job_array(tmp_path, checkpoint):
    env = {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "1"}
    proc = run_cli(tmp_path, "--model_file", checkpoint.name, *GRID, "--of", "2", env=env)
    assert "shard 1 of 2" in proc.stdout and (tmp_path / "s.h5_rank=1_of=2.h5").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--rank", "1"], "need --of N"),
    (["--merge"], "need --of N"),
    (["--of", "2", "--rank", "2"], "--rank must be in 0..1"),
    (["--of", "0"], "--of must be >= 1"),
    (["--of", "2"], "--rank I"),
])
def test_run_mode_flags_are_checked(tmp_path, args, fragment):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_ARRAY")}
    proc = subprocess.run([sys.executable, str(ROOT / "plot_surface.py"), *BASE, *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert_usage_error(proc, fragment)


def test_estimate_is_within_a_factor_of_two_of_the_real_time(tmp_path, checkpoint):
    args = ["--model", SLOW_MODEL, "--model_file", checkpoint.name, "--x=-1:1:5", "--y=-1:1:4",
            "--surf_file", "s.h5"]
    env = {"TINY_SLEEP": "0.02"}
    proc = run_cli(tmp_path, *args, "--estimate", env=env)
    per_point = float(re.search(r"; ([0-9.e+-]+) s per point", proc.stdout).group(1))
    assert "20 of 20 points to compute" in proc.stdout
    assert "expected wall time with 1 rank(s)" in proc.stdout
    assert not (tmp_path / "s.h5").exists()  # --estimate writes no surface file
    proc = run_cli(tmp_path, *args, env=env)
    real = float(re.search(r"computed 20 point\(s\) in ([0-9.]+) s", proc.stdout).group(1))
    assert 0.5 <= 20 * per_point / real <= 2, (per_point, real)


@pytest.mark.mpi
def test_killing_one_rank_ends_the_job_and_a_rerun_completes(tmp_path, checkpoint):
    args = ["--model", SLOW_MODEL, "--model_file", checkpoint.name, "--x=-1:1:6", "--y=-1:1:5",
            "--surf_file", "s.h5", "--flush_secs", "0.05"]
    _copy_checkpoint(tmp_path / "clean", checkpoint)
    run_cli(tmp_path / "clean", *args, env={"TINY_SLEEP": "0.002"})
    cmd = [str(MPIRUN), "-n", "2", sys.executable, str(ROOT / "plot_surface.py"), *BASE, *args]
    env = {**os.environ, "TINY_SLEEP": "0.01", "TINY_PIDDIR": str(tmp_path)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    surf, deadline = tmp_path / "s.h5", time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if (tmp_path / "rank1.pid").exists() and surf.exists():
            s = h5io.read_surface_file(str(surf))
            if "train_loss" in s.arrays and s.done_mask(TRAIN).sum() >= 4:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the kill"
    os.kill(int((tmp_path / "rank1.pid").read_text()), signal.SIGKILL)
    killed = time.monotonic()
    proc.communicate(timeout=60)
    assert time.monotonic() - killed < 15 and proc.returncode != 0
    done = h5io.read_surface_file(str(surf)).done_mask(TRAIN).sum()  # readable, not complete
    assert 4 <= done < 30
    proc = run_cli(tmp_path, *args, env={"TINY_SLEEP": "0.002"})
    assert f"{done} were already done" in proc.stdout
    resumed, clean = (h5io.read_surface_file(str(p / "s.h5")) for p in (tmp_path, tmp_path / "clean"))
    np.testing.assert_array_equal(resumed.arrays["train_loss"], clean.arrays["train_loss"])


@pytest.mark.mpi
def test_a_rank_stalled_at_start_up_is_reported(tmp_path):
    proc = run_script("plot_surface.py", "--model", TINY_MODEL, "--dataset",
                      f"{DATA / 'rank_data.py'}:stalled", "--x=-1:1:3", "--no_progress",
                      cwd=tmp_path, nproc=2, env={"LANDSCAPE_WAIT_REPORT_SECS": "0.5"})
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"waiting \d+ s for rank\(s\) \[1\] \(host\(s\) \S+\) to finish loading the data",
                     proc.stderr), proc.stderr


@pytest.mark.mpi
def test_chunks_of_points_per_forward_under_mpi(tmp_path, checkpoint):
    args = ["--model_file", checkpoint.name, "--x=-1:1:5", "--y=-1:1:3", "--eval_test"]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    for sub in ("a", "b"):
        (tmp_path / sub / checkpoint.name).write_bytes(checkpoint.read_bytes())
    run_cli(tmp_path / "a", *args, "--surf_file", "s.h5")
    proc = run_cli(tmp_path / "b", *args, "--surf_file", "s.h5", "--points_per_forward", "4", nproc=2)
    assert "computed 15 point(s)" in proc.stdout
    a, b = (h5io.read_surface_file(str(tmp_path / s / "s.h5")) for s in ("a", "b"))
    for key in ("train_loss", "test_loss"):
        np.testing.assert_allclose(b.arrays[key], a.arrays[key], rtol=1e-5)
    proc = run_script("plot_surface.py", *BASE, *args, "--dir_type", "states", "--points_per_forward", "2",
                      cwd=tmp_path / "b")
    assert_usage_error(proc, "--dir_type weights")


def _start_and_wait_for_forwards(cmd: list[str], cwd: Path, calls: Path, n: int,
                                 env: dict) -> subprocess.Popen:
    """Start ``cmd`` and return once its model has run ``n`` forward passes."""
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **env, "TINY_CALLS": str(calls)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if calls.exists() and calls.stat().st_size >= n:
            return proc
        time.sleep(0.02)
    raise AssertionError(f"no progress before the signal: {proc.communicate()}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_the_finished_points_and_says_so(tmp_path, checkpoint, signum):
    args = ["--model", SLOW_MODEL, "--model_file", checkpoint.name, "--x=-1:1:6", "--y=-1:1:5",
            "--surf_file", "s.h5", "--flush_secs", "1000", "--batch_size", "512"]
    cmd = [sys.executable, str(ROOT / "plot_surface.py"), *BASE, *args]
    proc = _start_and_wait_for_forwards(cmd, tmp_path, tmp_path / "calls", 20, {"TINY_SLEEP": "0.02"})
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, (out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    saved = int(re.search(rf"stopped by {signum.name}: the (\d+) point\(s\) finished in this run are "
                          r"saved in s\.h5", err).group(1))
    surface = h5io.read_surface_file(str(tmp_path / "s.h5"))
    assert saved >= 3 and surface.done_mask(TRAIN).sum() == saved  # none lost, none invented
    assert np.isfinite(surface.arrays["train_loss"][surface.done_mask(TRAIN)]).all()
    proc = run_cli(tmp_path, *args, env={"TINY_SLEEP": "0"})
    assert f"{saved} were already done" in proc.stdout


@pytest.mark.mpi
def test_sigterm_to_every_rank_saves_the_points_of_all_ranks(tmp_path, checkpoint):
    """What a SLURM time limit does: SIGTERM to every task of the step."""
    args = ["--model", SLOW_MODEL, "--model_file", checkpoint.name, "--x=-1:1:6", "--y=-1:1:5",
            "--surf_file", "s.h5", "--flush_secs", "1000", "--batch_size", "512"]
    cmd = [str(MPIRUN), "-n", "2", sys.executable, str(ROOT / "plot_surface.py"), *BASE, *args]
    proc = _start_and_wait_for_forwards(cmd, tmp_path, tmp_path / "calls", 30,
                                        {"TINY_SLEEP": "0.02", "TINY_PIDDIR": str(tmp_path)})
    for rank in (0, 1):
        os.kill(int((tmp_path / f"rank{rank}.pid").read_text()), signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, (out, err)
    saved = int(re.search(r"stopped by SIGTERM: the (\d+) point\(s\) finished in this run are saved", err).group(1))
    surface = h5io.read_surface_file(str(tmp_path / "s.h5"))
    assert saved >= 3 and surface.done_mask(TRAIN).sum() == saved


@pytest.mark.mpi
def test_a_rank_stalled_mid_grid_is_named(tmp_path):
    proc = run_script("plot_surface.py", *BASE, "--model", f"{DATA / 'tiny_model.py'}:stalling",
                      "--x=-1:1:5", "--surf_file", "s.h5", cwd=tmp_path, nproc=2,
                      env={"LANDSCAPE_WAIT_REPORT_SECS": "0.5", "TINY_STALL": "3"})
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"waiting \d+ s for rank\(s\) \[1\] \(host\(s\) \S+\) to send their last point\(s\)",
                     proc.stderr), proc.stderr
    assert h5io.read_surface_file(str(tmp_path / "s.h5")).done_mask(TRAIN).all()
