"""The paper/ scripts: each prints its paper-scale plan (training, --estimate runs, grids, table),
writes it as chained sbatch files, and names training folders as cifar10/main.py does. The small
scale (minutes per figure) is run by `make gallery`, not here."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT

from loss_landscape_toolkit._naming import save_folder_name

sys.path.insert(0, str(ROOT / "paper"))
import _common

SCRIPTS = sorted(p.name for p in (ROOT / "paper").glob("fig*.py"))


def _plan(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "paper" / script), "--scale", "paper", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def test_there_is_a_script_per_finding():
    assert SCRIPTS == ["fig18_random_directions.py", "fig1_skip_connections.py", "fig3_linear_interpolation.py",
                       "fig4_batch_size_weight_decay.py", "fig5_depth.py", "fig6_width.py", "fig7_hessian_ratio.py",
                       "fig9_trajectories.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_paper_scale_prints_training_estimates_and_grids(script):
    proc = _plan(script)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    trains = [line for line in lines if line.startswith("python cifar10/main.py")]
    assert trains and all("--epochs 300" in line for line in trains)  # the paper's recipe, on CIFAR-10
    assert not any("digits" in line for line in lines)
    grids = [line for line in lines if "plot_surface.py" in line or "plot_hessian_eigen.py" in line]
    assert any(line.startswith("mpirun -n ") and "--cuda" in line for line in grids)
    if script != "fig9_trajectories.py":  # the PCA plane's range is known only after training
        assert any(line.endswith("--estimate") for line in grids)
        assert any(line.startswith("python compare_surfaces.py -f ") for line in lines)


def test_written_jobs_are_chained_on_their_training(tmp_path):
    proc = _plan("fig1_skip_connections.py", "--write", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    jobs = sorted(p.name for p in tmp_path.glob("*.sbatch"))
    assert jobs == ["01_train_resnet56_bs128_wd0.0005.sbatch", "02_resnet56_2d.sbatch",
                    "03_train_resnet56_noshort_bs128_wd0.0005.sbatch", "04_resnet56_noshort_2d.sbatch",
                    "05_compare.sbatch"]
    surface = (tmp_path / "02_resnet56_2d.sbatch").read_text()
    assert "#SBATCH --ntasks=4" in surface and "#SBATCH --gpus-per-task=1" in surface
    assert 'srun --mpi=pmi2 "$PYTHON" plot_surface.py --cuda --model resnet56' in surface
    submit = (tmp_path / "submit.sh").read_text().splitlines()
    grid = next(line for line in submit if "02_resnet56_2d.sbatch" in line)
    assert "--dependency=afterok:$job_train_resnet56_bs128_wd0_0005 " in grid
    table = next(line for line in submit if "05_compare.sbatch" in line)
    assert "--dependency=afterok:$job_resnet56_2d:$job_resnet56_noshort_2d " in table
    syntax = subprocess.run(["bash", "-n", str(tmp_path / "submit.sh")], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


def test_submit_without_slurm_is_one_line_and_exit_2(tmp_path):
    empty = tmp_path / "bin"  # a PATH without sbatch
    empty.mkdir()
    proc = _plan("fig7_hessian_ratio.py", "--submit", "--write", str(tmp_path / "jobs"), env={"PATH": str(empty)})
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "needs SLURM's sbatch" in proc.stderr
    assert (tmp_path / "jobs" / "submit.sh").exists()  # written all the same, to submit elsewhere


@pytest.mark.parametrize("run", [_common.small_run("resnet20"), _common.small_run("paper/small_models.py:x"),
                                 _common.Training("vgg9", batch_size=8192, weight_decay=0.0, save_epoch=1),
                                 _common.Training("resnet56", lr=0.05, momentum=0.0)])
@pytest.mark.parametrize("small", [True, False])
def test_training_folders_are_named_as_the_training_program_names_them(run, small):
    expected = save_folder_name(model=run.model, optimizer=run.optimizer, lr=run.lr, lr_decay=0.1,
                                batch_size=run.batch_size, weight_decay=run.weight_decay, momentum=run.momentum,
                                save_epoch=run.save_epoch, noaug=small, dataset="digits" if small else "cifar10")
    assert run.folder("nets", small=small) == os.path.join("nets", expected)
