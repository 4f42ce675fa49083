"""Shared machinery of the paper/ scripts: one experiment description, two scales.

Each ``paper/figN_*.py`` script reproduces one finding of Li et al. (2018) and calls :func:`main`
with two functions:

``small(scale: SmallScale)``
    runs the toolkit's programs on the embedded digits data on a CPU, exactly as a user would:
    subprocesses of the checkout's scripts (``cifar10/main.py``, ``plot_surface.py``, ...) with
    the virtual environment's python, from the project folder. Files go to
    ``paper/out/<figure>/`` (trained networks to ``paper/out/trained_nets/``, shared by the
    figures). A step whose outputs exist is skipped, so a rerun only redoes what is missing
    (``plot_surface.py`` itself resumes an interrupted grid). At the end the script prints the
    side-by-side numbers (``compare_surfaces.py``) and writes the gallery figure and those
    numbers to ``paper/gallery/``.
``paper(plan: Plan)``
    describes the same experiment at the paper's scale on CIFAR-10: training runs, surfaces and
    curvature maps with their GPU counts and time limits. The script prints the commands (for
    ``mpirun`` on a workstation, or as SLURM jobs), ``--write DIR`` writes one sbatch file per
    job and ``DIR/submit.sh`` (which chains them with ``--dependency=afterok``), ``--submit``
    also runs it, and ``--estimate`` runs the ``--estimate`` command of each grid here.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "paper"
OUT = PAPER / "out"
GALLERY = PAPER / "gallery"
NETS = OUT / "trained_nets"  # small-scale training runs, shared by the figures
SHARED = OUT / "shared"  # small-scale standard 2D surfaces that several figures show
PAPER_NETS = "trained_nets"  # paper-scale training runs (cifar10/main.py's default, under the project folder)
SMALL_DPI = 72  # of the PNGs the programs draw; the gallery figure is composed from them
GALLERY_COLORS = 64  # palette of the gallery PNGs (keeps each at a few tens of KB)
GALLERY_DPI = 85


def python() -> str:
    """The virtual environment's python when there is one, else the running interpreter."""
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def rel(path: Path | str) -> str:
    """``path`` relative to the project folder (where every program runs), for short command lines."""
    return os.path.relpath(path, ROOT)


# --------------------------------------------------------------------------- training runs
@dataclass(frozen=True)
class Training:
    """One run of ``cifar10/main.py`` (the paper's recipe unless a field says otherwise)."""

    model: str
    epochs: int = 300
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-4
    optimizer: str = "sgd"
    momentum: float = 0.9
    save_epoch: int = 10

    def args(self, save: str, *, small: bool) -> list[str]:
        """Flags of ``cifar10/main.py``; ``small``: the digits data, no augmentation, NHWC."""
        args = ["--model", self.model, "--epochs", str(self.epochs), "--batch_size", str(self.batch_size),
                "--lr", str(self.lr), "--weight_decay", str(self.weight_decay), "--optimizer", self.optimizer,
                "--momentum", str(self.momentum), "--save_epoch", str(self.save_epoch), "--save", save]
        return args + (["--dataset", "digits", "--noaug", "--channels_last"] if small else [])

    def folder(self, save: str, *, small: bool) -> str:
        """The run's folder, named by the reference's rule (README, cifar10/main.py)."""
        tag = "".join(c if c.isalnum() or c in "-_.=" else "_"
                      for c in os.path.basename(self.model.replace(":", "-")))
        name = (f"{tag}_{self.optimizer}_lr={float(self.lr)}_bs={self.batch_size}_wd={float(self.weight_decay)}"
                f"_mom={float(self.momentum)}_save_epoch={self.save_epoch}")
        return os.path.join(save, name + ("_noaug_dataset=digits" if small else ""))

    def checkpoint(self, save: str, *, small: bool, epoch: int | None = None) -> str:
        """``model_{epoch}.t7`` of the run (default: the final epoch)."""
        return os.path.join(self.folder(save, small=small), f"model_{self.epochs if epoch is None else epoch}.t7")


SMALL_GRID = "-1:1:17"  # standard 2D surface: the paper's range (same for every model), 17 x 17 points
SMALL_LINE = "auto:41"  # standard 1D curve, fine enough to measure the width under centre + 0.1:
LINE_RISE = 0.3  # its range ends 1.5 times beyond where the loss rises by this much
SMALL_SPLIT = 8  # ... both evaluated on 1/8 of the digits' training set (180 images)
SMALL_EPOCHS = 12  # enough for the digits (99% training accuracy for ResNet-20 at batch 64)
DECAY_EPOCHS = 2  # the last epochs of a small-scale run, at a tenth of the learning rate


def small_run(model: str, **recipe) -> Training:
    """The small-scale recipe: batch 64, a checkpoint per epoch (for trajectories), 12 epochs of
    which the last ``DECAY_EPOCHS`` at a tenth of the learning rate (:meth:`SmallScale.train`),
    else the paper's (SGD with Nesterov momentum 0.9, lr 0.1, weight decay 5e-4)."""
    return Training(model, **{"epochs": SMALL_EPOCHS, "batch_size": 64, "save_epoch": 1, **recipe})


# the batch-size / weight-decay study shared by fig3, fig4 and fig9 (the paper trains VGG-9)
WEIGHT_DECAYS = (0.0, 5e-4)
SMALL_BATCHES = (32, 512)  # 2% and 36% of the digits' 1,437 training images
PAPER_BATCHES = (128, 8192)  # 0.3% and 16% of CIFAR-10's 50,000
SMALL_BATCH_EPOCHS = 20  # the large batch takes 3 steps an epoch


def batch_runs(*, small: bool) -> dict[tuple[int, float], Training]:
    """``{(batch size, weight decay): run}``: small and large batch, with and without weight
    decay, a checkpoint every epoch (the trajectories of fig9). Small scale: ResNet-20 on the
    digits; paper scale: VGG-9 on CIFAR-10, as in the paper's Figs. 3, 4 and 9."""
    if small:
        return {(bs, wd): small_run("resnet20", batch_size=bs, weight_decay=wd, epochs=SMALL_BATCH_EPOCHS)
                for bs in SMALL_BATCHES for wd in WEIGHT_DECAYS}
    return {(bs, wd): Training("vgg9", batch_size=bs, weight_decay=wd, save_epoch=1)
            for bs in PAPER_BATCHES for wd in WEIGHT_DECAYS}


def run_label(batch_size: int, weight_decay: float) -> str:
    """How the gallery names a run of the batch study, e.g. ``bs=32,wd=0.0005``."""
    return f"bs={batch_size},wd={weight_decay:g}"


def run_tag(batch_size: int, weight_decay: float) -> str:
    """The same, for file names: ``bs32_wd0.0005``."""
    return f"bs{batch_size}_wd{weight_decay:g}"


def final_test_error(checkpoint: str) -> float:
    """Test error (%) of the last epoch in the run's log.out (the reference's ``test_top1``)."""
    log = (ROOT / checkpoint).parent / "log.out"
    last = [line for line in log.read_text().splitlines() if line.startswith("e: ")][-1].split()
    return float(last[last.index("test_top1:") + 1])


def plot_files(surf_file: str, *, two_d: bool, hessian: bool = False) -> list[str]:
    """The PNGs ``--plot --format png`` draws next to a surface file (names as the README's table)."""
    if hessian:
        return [f"{surf_file}_min_eig_max_eig_abs_ratio_heat_sns.png" if two_d else f"{surf_file}_1d_eig_abs_ratio.png"]
    if two_d:
        return [f"{surf_file}_train_loss_{kind}.png" for kind in ("2dcontour", "2dcontourf", "2dheat", "3dsurface")]
    return [f"{surf_file}_1d_{kind}.png" for kind in ("loss_acc", "train_loss", "train_err")]


def contour_png(surf_file: str) -> str:
    """The contour lines of a 2D surface file's training loss."""
    return plot_files(surf_file, two_d=True)[0]


def surface3d_png(surf_file: str) -> str:
    """The 3D surface of a 2D surface file's training loss."""
    return plot_files(surf_file, two_d=True)[3]


# --------------------------------------------------------------------------- small scale
class StepFailed(RuntimeError):
    """A program of a small-scale run exited with an error (its output is in the log named)."""


class SmallScale:
    """Runs one figure's small-scale steps: the checkout's programs, outputs under ``out``."""

    def __init__(self, figure: str, *, out: Path, threads: int | None):
        self.figure, self.out, self.threads = figure, out, threads
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def run(self, program: str, args: Sequence[str], *, log: str, outputs: Sequence[str] = ()) -> str:
        """Run ``python program args`` from the project folder, unless every path of ``outputs``
        exists. Its output goes to the terminal and to ``logs/<log>.log``; returns that output.

        Raises:
            StepFailed: the program exited with a non-zero code, or did not write ``outputs``.
        """
        cmd = [python(), program, *args]
        shown = shlex.join(["python", *cmd[1:]])
        if outputs and all((ROOT / p).exists() for p in outputs):
            print(f"[{self.figure}] done already, skipped: {shown}", flush=True)
            return ""
        print(f"[{self.figure}] $ {shown}", flush=True)
        path = self.logs / f"{log}.log"
        lines = []
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.threads:  # training has no --threads flag; torch reads this at start-up
            env["OMP_NUM_THREADS"] = str(self.threads)
        with open(path, "w") as handle, subprocess.Popen(
                cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
            for line in proc.stdout:
                print(f"    {line}", end="", flush=True)
                handle.write(line)
                lines.append(line)
        if proc.returncode:
            raise StepFailed(f"{program} exited with code {proc.returncode} (output in {rel(path)})")
        missing = [p for p in outputs if not (ROOT / p).exists()]
        if missing:
            raise StepFailed(f"{program} finished but did not write {', '.join(missing)}")
        return "".join(lines)

    def train(self, run: Training) -> str:
        """Train ``run`` on the digits, ending with ``DECAY_EPOCHS`` at a tenth of its learning
        rate; returns the final checkpoint, relative to the project folder.

        cifar10/main.py decays the learning rate only after epochs 150, 225 and 275, so a short
        run would end on a noisy iterate at the full rate, not at a minimizer as the paper's runs
        do. So the run trains to epoch E - DECAY_EPOCHS, then resumes from there with lr / 10 to
        epoch E, in the folder named with that rate, where the first part's checkpoints are
        linked too: that folder holds the whole path (fig9's trajectories). Parts whose
        checkpoints exist are skipped.
        """
        save = rel(NETS)
        head, tail = replace(run, epochs=run.epochs - DECAY_EPOCHS), replace(run, lr=run.lr / 10)
        final, start = tail.checkpoint(save, small=True), head.checkpoint(save, small=True)
        if (ROOT / final).exists():
            print(f"[{self.figure}] done already, skipped: training {final}", flush=True)
            return final
        log = f"train_{_slug(run.model)}_{run_tag(run.batch_size, run.weight_decay)}"
        self.run("cifar10/main.py", head.args(save, small=True), log=log, outputs=[start])
        resume = ["--resume_model", start, "--resume_opt", start.replace("/model_", "/opt_state_")]
        self.run("cifar10/main.py", tail.args(save, small=True) + resume, log=log + "_decay", outputs=[final])
        _link_checkpoints(ROOT / head.folder(save, small=True), ROOT / tail.folder(save, small=True), head.epochs)
        return final

    def _grid_flags(self, x: str, y: str | None, data_split: int) -> list[str]:
        flags = ["--dataset", "digits", f"--x={x}", "--data_split", str(data_split), "--no_progress",
                 "--plot", "--format", "png", "--dpi", str(SMALL_DPI)]
        flags += [f"--y={y}"] if y else []
        return flags + (["--threads", str(self.threads)] if self.threads else [])

    def surface(self, name: str, *, model: str, model_file: str, x: str, y: str | None = None,
                data_split: int = 4, extra: Sequence[str] = (), folder: Path | None = None,
                plots: Sequence[str] = ()) -> str:
        """``plot_surface.py`` into ``<folder or out>/<name>.h5``; returns the file. Its figures
        go beside it, or are ``plots`` (e.g. the trajectory on the contours, beside --proj_file)."""
        (folder or self.out).mkdir(parents=True, exist_ok=True)
        surf = rel((folder or self.out) / f"{name}.h5")
        self.run("plot_surface.py", ["--model", model, "--model_file", model_file, "--surf_file", surf,
                                     *self._grid_flags(x, y, data_split), *extra],
                 log=name, outputs=list(plots) or plot_files(surf, two_d=y is not None))
        return surf

    def standard_surface(self, model: str, model_file: str) -> str:
        """The standard small-scale 2D surface of a trained model (``SMALL_GRID``, ``SMALL_SPLIT``),
        kept in ``paper/out/shared/`` so that the figures showing the same model share it."""
        return self.surface(f"{_slug(model)}_2d_{_slug(SMALL_GRID)}", model=model, model_file=model_file,
                            x=SMALL_GRID, y=SMALL_GRID, data_split=SMALL_SPLIT, folder=SHARED)

    def standard_line(self, model: str, model_file: str) -> str:
        """The standard small-scale 1D curve of a trained model (``SMALL_LINE``), shared like
        :meth:`standard_surface`: the 2D grid draws the basin, this line measures it."""
        return self.surface(f"{_slug(model)}_1d_{_slug(SMALL_LINE)}", model=model, model_file=model_file, x=SMALL_LINE,
                            data_split=SMALL_SPLIT, folder=SHARED, extra=["--auto_rise", str(LINE_RISE)])

    def standard_study(self, models: Sequence[str], labels: Sequence[str]) -> tuple[list[str], str]:
        """Train each model (small recipe), take its standard 1D curve and 2D surface, and print
        one table of them all; returns the 2D surface files and the table."""
        lines, planes = [], []
        for model in models:
            checkpoint = self.train(small_run(model))
            lines.append(self.standard_line(model, checkpoint))
            planes.append(self.standard_surface(model, checkpoint))
        table = self.compare(lines + planes, [f"{label} 1D" for label in labels] + [f"{label} 2D" for label in labels])
        return planes, table

    def hessian(self, name: str, *, model: str, model_file: str, x: str, y: str | None = None,
                data_split: int = 16, extra: Sequence[str] = ()) -> str:
        """``plot_hessian_eigen.py`` into ``out/<name>.h5`` (the |min/max| maps beside it)."""
        surf = rel(self.out / f"{name}.h5")
        self.run("plot_hessian_eigen.py", ["--model", model, "--model_file", model_file, "--surf_file", surf,
                                           *self._grid_flags(x, y, data_split), *extra],
                 log=name, outputs=plot_files(surf, two_d=y is not None, hessian=True))
        return surf

    def compare(self, files: Sequence[str], labels: Sequence[str], *, log: str = "compare") -> str:
        """Print the side-by-side numbers of ``files`` (always recomputed: it takes a second)."""
        return self.run("compare_surfaces.py", ["-f", *files, "--labels", *labels], log=log)

    def publish(self, panels: Sequence[tuple[str, str]], *, title: str, numbers: str, ncols: int = 0) -> Path:
        """Compose the PNGs of ``panels`` ((path, caption), ...) into ``paper/gallery/<figure>.png``
        and write ``numbers`` beside it as ``<figure>.txt``; returns the PNG."""
        GALLERY.mkdir(exist_ok=True)
        dest = GALLERY / f"{self.figure}.png"
        compose([(ROOT / p, caption) for p, caption in panels], dest, title=title, ncols=ncols)
        dest.with_suffix(".txt").write_text(numbers)
        print(f"[{self.figure}] gallery: {rel(dest)} ({dest.stat().st_size // 1024} KB) and "
              f"{rel(dest.with_suffix('.txt'))}", flush=True)
        return dest


def _link_checkpoints(source: Path, dest: Path, last: int) -> None:
    """Hard-link ``model_0.t7`` .. ``model_{last}.t7`` of ``source`` into ``dest`` (those missing)."""
    for epoch in range(last + 1):
        src, dst = source / f"model_{epoch}.t7", dest / f"model_{epoch}.t7"
        if src.exists() and not dst.exists():
            os.link(src, dst)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in os.path.basename(text.replace(":", "_"))).strip("_")


def compose(panels: Sequence[tuple[Path, str]], dest: Path, *, title: str, ncols: int = 0) -> None:
    """Tile PNGs into one small figure with a caption over each, saved with a reduced palette."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt
    from PIL import Image

    ncols = ncols or len(panels)
    nrows = -(-len(panels) // ncols)
    images = [mpimg.imread(path) for path, _ in panels]
    aspect = max(img.shape[0] / img.shape[1] for img in images)
    panel = max(3.1, 5.5 / ncols)  # inches; a lone panel is drawn larger
    title = textwrap.fill(title, width=int(14 * panel * ncols))  # about 14 characters an inch at 10 points
    height = panel * aspect * nrows + 0.5 + 0.2 * title.count("\n")
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel * ncols, height), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, (_, caption) in zip(axes.flat, images, panels):
        ax.imshow(img, interpolation="lanczos")
        ax.set_title(caption, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=GALLERY_DPI)
    plt.close(fig)
    buffer.seek(0)
    palette = Image.open(buffer).convert("RGB").quantize(colors=GALLERY_COLORS, method=Image.Quantize.MEDIANCUT)
    palette.save(dest, optimize=True)


# --------------------------------------------------------------------------- paper scale
@dataclass(frozen=True)
class Command:
    """One command line of a job. ``mpi``: one rank per GPU (``mpirun -n N`` / ``srun``).
    ``tail``: shell text appended as it is (a pipe, or ``$(...)`` reading an earlier output)."""

    program: str
    args: tuple[str, ...]
    mpi: bool = False
    tail: str = ""

    def render(self, *, ranks: int, slurm: bool) -> str:
        py = '"$PYTHON"' if slurm else "python"
        launch = ("srun --mpi=pmi2 " if slurm else f"mpirun -n {ranks} ") if self.mpi and ranks > 1 else ""
        line = f"{launch}{py} {shlex.join([self.program, *self.args])}"
        return f"{line} {self.tail}" if self.tail else line


@dataclass
class Job:
    """Commands that run together on the cluster, after the jobs named in ``after``."""

    name: str
    commands: list[Command]
    after: list[str] = field(default_factory=list)
    ranks: int = 1  # MPI ranks, one GPU each
    gpus: int = 1  # GPUs per rank (0: a CPU job)
    hours: float = 1.0  # time limit
    stage: str = ""  # heading of the printed plan
    estimate: Command | None = None  # times the grid before it is run


def _hms(hours: float) -> str:
    minutes = int(round(hours * 60))
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


class Plan:
    """The paper-scale jobs of one figure, printed as commands or written as sbatch files."""

    def __init__(self, figure: str, *, out: Path):
        self.figure, self.out = figure, out
        self.jobs: list[Job] = []

    def add(self, job: Job) -> str:
        if any(j.name == job.name for j in self.jobs):
            raise ValueError(f"two jobs named {job.name!r} in {self.figure}")
        self.jobs.append(job)
        return job.name

    def file(self, name: str) -> str:
        """A result file of the figure, relative to the project folder."""
        return rel(self.out / name)

    def train(self, run: Training, *, hours: float) -> tuple[str, str]:
        """A training job on one GPU; returns (job name, final checkpoint)."""
        name = self.add(Job(f"train_{_slug(run.model)}_bs{run.batch_size}_wd{run.weight_decay:g}",
                            [Command("cifar10/main.py", tuple(run.args(PAPER_NETS, small=False)))],
                            hours=hours, stage="train (one GPU each)"))
        return name, run.checkpoint(PAPER_NETS, small=False)

    def grid(self, name: str, *, program: str = "plot_surface.py", model: str, model_file: str, x: str,
             y: str | None = None, after: Sequence[str] = (), ranks: int = 4, hours: float = 2.0,
             extra: Sequence[str] = (), target: str | None = None) -> str:
        """A surface (or, with ``plot_hessian_eigen.py``, curvature map) job into ``<name>.h5``;
        ``target``: the x direction runs to this checkpoint (a linear interpolation). Returns the
        file. Its --estimate command times it on random weights (same cost per point)."""
        surf = self.file(f"{name}.h5")
        grid = [f"--x={x}"] + ([f"--y={y}"] if y else [])
        to_target = ["--model_file2", target] if target else []
        args = ("--cuda", "--model", model, "--model_file", model_file, *to_target, *grid, "--surf_file", surf,
                *extra, "--plot")
        estimate = Command(program, ("--cuda", "--model", model, *grid, *extra, "--estimate"))
        self.add(Job(name, [Command(program, args, mpi=True)], after=list(after), ranks=ranks, hours=hours,
                     stage="grids (one GPU per rank)", estimate=estimate))
        return surf

    def cpu(self, name: str, commands: Sequence[Command], *, after: Sequence[str], stage: str) -> str:
        """A short CPU job (figures, tables)."""
        return self.add(Job(name, list(commands), after=list(after), gpus=0, hours=0.25, stage=stage))

    def grids(self) -> list[str]:
        """The names of the grid jobs so far (what a table of their files waits for)."""
        return [job.name for job in self.jobs if job.estimate]

    def trained_surfaces(self, hours: dict[str, tuple[float, float]]) -> None:
        """For each model (-> its training and grid time limits): its training, its 51 x 51
        surface on [-1, 1]^2 around the final checkpoint, then the table of all of them."""
        files = []
        for model, (train_hours, grid_hours) in hours.items():
            job, checkpoint = self.train(Training(model), hours=train_hours)
            files.append(self.grid(f"{model}_2d", model=model, model_file=checkpoint, x="-1:1:51", y="-1:1:51",
                                   after=[job], hours=grid_hours))
        self.compare(files, list(hours), after=self.grids())

    def compare(self, files: Sequence[str], labels: Sequence[str], *, after: Sequence[str]) -> str:
        """A job printing the side-by-side numbers of ``files``."""
        return self.cpu("compare", [Command("compare_surfaces.py", ("-f", *files, "--labels", *labels))],
                        after=after, stage="numbers side by side")

    # ----------------------------------------------------------------------- output
    def render(self, *, slurm: bool) -> str:
        """The plan as commands for a workstation (``mpirun``) or as the sbatch jobs' lines."""
        lines, stage = [f"mkdir -p {shlex.quote(rel(self.out))}"], None
        estimates = list(dict.fromkeys(j.estimate.render(ranks=1, slurm=False) for j in self.jobs if j.estimate))
        if estimates:
            lines += ["# time per grid point first (needs CIFAR-10; random weights cost as much as trained",
                      "# ones): prints the wall time for 1-128 ranks and the sbatch --ntasks/--time to ask for",
                      *estimates, ""]
        stages = list(dict.fromkeys(j.stage for j in self.jobs))  # in order of first appearance
        for job in sorted(self.jobs, key=lambda j: stages.index(j.stage)):
            if job.stage != stage:
                stage = job.stage
                lines.append(f"# {stage}")
            if slurm:
                lines.append(f"# job {job.name}: {self._resources(job)}"
                             + (f", after {', '.join(job.after)}" if job.after else ""))
            lines += [c.render(ranks=job.ranks, slurm=slurm) for c in job.commands]
        return "\n".join(lines)

    def _resources(self, job: Job) -> str:
        res = [f"--ntasks={job.ranks}", f"--time={_hms(job.hours)}"]
        if job.gpus:
            res.append(f"--gpus-per-task={job.gpus}")
        return " ".join(res)

    def write(self, folder: Path) -> Path:
        """One sbatch file per job and ``submit.sh``, which submits them in order with
        ``--dependency=afterok`` on the jobs each needs; returns ``submit.sh``."""
        folder.mkdir(parents=True, exist_ok=True)
        submit = ["#!/bin/bash", f"# Submits the paper-scale jobs of {self.figure}; run from the project folder.",
                  "set -euo pipefail", 'mkdir -p "$(dirname "$0")/logs"']
        for number, job in enumerate(self.jobs, start=1):
            path = folder / f"{number:02d}_{job.name}.sbatch"
            path.write_text(self._sbatch(job, folder))
            dependency = f" --dependency=afterok:{':'.join('$' + _var(a) for a in job.after)}" if job.after else ""
            submit.append(f"{_var(job.name)}=$(sbatch --parsable{dependency} {shlex.quote(rel(path))})")
            submit.append(f'echo "submitted {job.name}: job ${_var(job.name)}"')
        script = folder / "submit.sh"
        script.write_text("\n".join(submit) + "\n")
        script.chmod(0o755)
        return script

    def _sbatch(self, job: Job, folder: Path) -> str:
        head = ["#!/bin/bash", f"# {self.figure}: {job.stage}", f"#SBATCH --job-name={self.figure}-{job.name}",
                f"#SBATCH --ntasks={job.ranks}", "#SBATCH --cpus-per-task=4", f"#SBATCH --time={_hms(job.hours)}",
                f"#SBATCH --output={rel(folder)}/logs/%x-%j.out"]
        if job.gpus:
            head.append(f"#SBATCH --gpus-per-task={job.gpus}   # EDIT: or your site's --gres=gpu:N")
        body = ["set -euo pipefail", 'cd "${LANDSCAPE_HOME:-$SLURM_SUBMIT_DIR}"',
                'export LANDSCAPE_DATAPATH=${LANDSCAPE_DATAPATH:-$PWD/cifar10/data}',
                'PYTHON=${PYTHON:-$PWD/.venv/bin/python}', f"mkdir -p {shlex.quote(rel(self.out))}"]
        return "\n".join(head + body + [c.render(ranks=job.ranks, slurm=True) for c in job.commands]) + "\n"

    def run_estimates(self) -> int:
        """Run every grid's --estimate here; returns the worst exit code."""
        worst = 0
        for job in self.jobs:
            if job.estimate:
                cmd = [python(), job.estimate.program, *job.estimate.args]
                print(f"$ {shlex.join(['python', *cmd[1:]])}", flush=True)
                worst = max(worst, subprocess.run(cmd, cwd=ROOT).returncode)
        return worst


def _var(name: str) -> str:
    return "job_" + _slug(name)


# --------------------------------------------------------------------------- command line
def build_parser(figure: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"paper/{figure}.py", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=("small", "paper"), default="small",
                        help="small: run it here on the digits data; paper: the CIFAR-10 commands of the paper")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder (default: paper/out/{figure}, paper scale paper/out/{figure}/cifar10)")
    parser.add_argument("--threads", type=int, default=None,
                        help="small scale: torch threads of every program (default: theirs, from the cores; "
                             "1 is faster on a machine busy with other work)")
    g = parser.add_argument_group("paper scale")
    g.add_argument("--slurm", action="store_true", help="print the jobs' SLURM resources and srun lines")
    g.add_argument("--write", type=Path, default=None, metavar="DIR",
                   help="write one sbatch file per job and DIR/submit.sh (chained with --dependency=afterok)")
    g.add_argument("--submit", action="store_true",
                   help="write them (to --write, default paper/out/<figure>/cifar10/sbatch) and run submit.sh")
    g.add_argument("--estimate", action="store_true",
                   help="run the --estimate command of every grid here (needs CIFAR-10, and a GPU for --cuda)")
    return parser


def main(doc: str, *, figure: str, small: Callable[[SmallScale], None], paper: Callable[[Plan], None],
         argv: Sequence[str] | None = None) -> int:
    """Entry of every figure script: parse the flags, then run the small scale or print the plan."""
    title, _, rest = doc.partition("\n\n")
    args = build_parser(figure, f"{title}\n\n{rest}").parse_args(argv)
    if args.scale == "small":
        started = time.monotonic()
        try:
            small(SmallScale(figure, out=args.out or OUT / figure, threads=args.threads))
        except StepFailed as exc:
            print(f"paper/{figure}.py: error: {exc}", file=sys.stderr)
            return 1
        print(f"[{figure}] small scale finished in {time.monotonic() - started:.0f} s", flush=True)
        return 0
    plan = Plan(figure, out=args.out or OUT / figure / "cifar10")
    paper(plan)
    print(f"# {title.strip()}\n# paper scale (CIFAR-10), run from the project folder\n")
    print(plan.render(slurm=args.slurm or args.write is not None or args.submit))
    if args.write or args.submit:
        script = plan.write(args.write or plan.out / "sbatch")
        print(f"\nsbatch files and {rel(script)} written", flush=True)
        if args.submit:
            if shutil.which("sbatch") is None:
                print(f"paper/{figure}.py: error: --submit needs SLURM's sbatch on PATH; the jobs are in "
                      f"{rel(script.parent)}", file=sys.stderr)
                return 2
            return subprocess.run(["bash", str(script)], cwd=ROOT).returncode
    return plan.run_estimates() if args.estimate else 0
