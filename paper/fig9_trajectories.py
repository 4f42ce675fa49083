"""Figs. 9/10: optimizer paths lie in a very low-dimensional space, seen on their PCA plane.

The paper's claim (Li et al. 2018, Sec. 7, Figs. 9 and 10): random directions are nearly
orthogonal to an optimization path, so paths are drawn on the plane of the top two PCA
directions of the checkpoints minus the final model; those two directions capture most of the
path's variation, i.e. the path is very low-dimensional. On that plane the loss contours are
drawn with the path on them, and how the path meets the contours (batch size and weight decay
change it) is read by eye.

small scale: the four ResNet-20 runs of fig3/fig4 (batch 32 and 512, weight decay 0 and 5e-4, a
checkpoint per epoch, 20 epochs on the digits, the last 2 at a tenth of the learning rate);
plot_trajectory.py, then the loss on the grid it suggests (the path plus 10%, 0 on the grid; a
sixteenth of the training set), the path drawn on it.
paper scale: the four VGG-9 runs (300 epochs, checkpoint per epoch) on CIFAR-10; the plane on the
grid plot_trajectory.py suggests.
"""
from __future__ import annotations

import os
import re

import _common as c
import h5py

FIGURE = "fig9_trajectories"


def _pca_files(folder: str) -> tuple[str, str]:
    """plot_trajectory.py's direction and projection files of a run (weights, stride 1)."""
    directions = f"{folder}/PCA_weights_save_epoch=1/directions.h5"
    return directions, f"{directions}_proj_cos.h5"


def _explained_variance(directions: str) -> list[float]:
    """PC1's and PC2's share of the path's variance, as plot_trajectory.py stores it (the
    reference's dataset; printed only when the PCA is computed, not when it is reused)."""
    with h5py.File(c.ROOT / directions, "r") as f:
        return [float(v) for v in f["explained_variance_ratio_"][()]]


def _suggested_range(output: str, axis: str) -> str:
    """The --x/--y range plot_trajectory.py suggests: the path plus 10%, with 0 on the grid."""
    return re.search(rf"--{axis}=(\S+)", output).group(1)


def small(s: c.SmallScale) -> None:
    panels, lines = [], []
    for (bs, wd), run in c.batch_runs(small=True).items():
        checkpoint = s.train(run)
        folder = os.path.dirname(checkpoint)
        directions, projection = _pca_files(folder)
        label = c.run_label(bs, wd)
        # cheap (seconds): rerun every time for the suggested ranges; it reuses its PCA and projection
        output = s.run("plot_trajectory.py", ["--model", run.model, "--dataset", "digits", "--model_folder", folder,
                                              "--max_epoch", str(run.epochs), "--format", "png",
                                              "--dpi", str(c.SMALL_DPI)], log=f"trajectory_{c.run_tag(bs, wd)}")
        surf = s.surface(f"pca_plane_{c.run_tag(bs, wd)}", model=run.model, model_file=checkpoint,
                         x=_suggested_range(output, "x"), y=_suggested_range(output, "y"), data_split=16,
                         extra=["--dir_file", directions, "--proj_file", projection],
                         plots=[f"{projection}_train_loss_2dcontour_proj.png"])
        ratio = _explained_variance(directions)
        lines.append(f"{label}: explained variance of PC1, PC2 = {100 * ratio[0]:.1f}%, {100 * ratio[1]:.1f}% "
                     f"(together {100 * sum(ratio):.1f}%); contours: {surf}")
        panels.append((f"{projection}_train_loss_2dcontour_proj.png", label))
    numbers = "\n".join(lines) + "\n"
    print(numbers, end="")
    s.publish(panels, ncols=2, numbers=numbers, title="Figs. 9/10 at small scale: paths on their PCA plane (digits)")


def paper(p: c.Plan) -> None:
    for (bs, wd), run in c.batch_runs(small=False).items():
        job, checkpoint = p.train(run, hours=6)
        folder = run.folder(c.PAPER_NETS, small=False)
        directions, projection = _pca_files(folder)
        log = p.file(f"trajectory_{c.run_tag(bs, wd)}.txt")
        ranges = " ".join(f"$(grep -o -e '--{axis}=[^ ]*' {log})" for axis in "xy")
        p.add(c.Job(f"pca_plane_{c.run_tag(bs, wd)}", [
            c.Command("plot_trajectory.py", ("--model", run.model, "--model_folder", folder, "--max_epoch",
                                             str(run.epochs)), tail=f"| tee {log}"),
            c.Command("plot_surface.py", ("--cuda", "--model", run.model, "--model_file", checkpoint, "--dir_file",
                                          directions, "--proj_file", projection, "--plot"), mpi=True, tail=ranges),
        ], after=[job], ranks=4, hours=3, stage="paths and their planes (one GPU per rank)"))


if __name__ == "__main__":
    raise SystemExit(c.main(__doc__, figure=FIGURE, small=small, paper=paper))
