"""Fig. 3: 1D linear interpolation between a small-batch and a large-batch minimizer misleads.

The paper's claim (Li et al. 2018, Fig. 3, Sec. 5): on the line from the small-batch solution
(alpha = 0) to the large-batch one (alpha = 1), without weight decay the small-batch minimizer
looks wide and the large-batch one sharp, but with weight decay 5e-4 the picture flips: the
small-batch minimizer looks sharper. Weight decay shrinks the small-batch weights, and a network
with BatchNorm is invariant to its weights' scale, so sharpness on this unnormalized line says
little (fig4_batch_size_weight_decay.py plots the same minimizers with filter normalization).

small scale: ResNet-20 trained on the digits with batch 32 and 512, with and without weight decay
(20 epochs, the last 2 at a tenth of the learning rate); the loss along the line between the two
minimizers (--model_file2, --dir_type states: BatchNorm statistics interpolated too) on 41 points
of [-0.5, 1.5], and the same line from the large-batch end (41 points of [-0.1, 0.3]), so that
each minimizer's width is measured around its own centre (in units of the distance between
them); the weight norms of the four networks.
paper scale: VGG-9 trained on CIFAR-10 with SGD, batch 128 and 8192, weight decay 0 and 5e-4 (300
epochs), the lines on 401 points of [-0.5, 1.5] (the paper's Adam runs are left out).
"""
from __future__ import annotations

import math

import _common as c
import torch

FIGURE = "fig3_linear_interpolation"
# small scale: the picture's line, and a finer one at the large-batch end, which is too sharp for
# the picture's grid (beyond that end, alpha < 0, the interpolated BatchNorm variances can turn
# negative: NaN losses there)
SMALL_LINES = {"small": "-0.5:1.5:41", "large": "-0.1:0.3:41"}
PAPER_LINE = "-0.5:1.5:401"


def _weight_norm(checkpoint: str) -> float:
    """L2 norm of the conv and linear weights of a checkpoint (the paper's Fig. 3 shows their
    histograms: weight decay shrinks the small-batch weights)."""
    state = torch.load(c.ROOT / checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return math.sqrt(sum(float((t.double() ** 2).sum()) for t in state.values() if t.dim() > 1))


def small(s: c.SmallScale) -> None:
    runs = c.batch_runs(small=True)
    checkpoints = {key: s.train(run) for key, run in runs.items()}
    small_bs, large_bs = c.SMALL_BATCHES
    files, labels, panels = [], [], []
    for wd in c.WEIGHT_DECAYS:
        ends = {"small": checkpoints[small_bs, wd], "large": checkpoints[large_bs, wd]}
        for centre, other in (("small", "large"), ("large", "small")):
            files.append(s.surface(f"interp_wd{wd:g}_from_{centre}", model="resnet20", model_file=ends[centre],
                                   x=SMALL_LINES[centre], data_split=2,
                                   extra=["--model_file2", ends[other], "--dir_type", "states"]))
            labels.append(f"wd={wd:g},centre={centre}-batch")
        panels.append((c.plot_files(files[-2], two_d=False)[0],
                       f"wd={wd:g}: batch {small_bs} (0) to batch {large_bs} (1)"))
    facts = [f"{c.run_label(*key)}: test error {c.final_test_error(ckpt):.2f}%, "
             f"weight norm {_weight_norm(ckpt):.1f}" for key, ckpt in checkpoints.items()]
    numbers = s.compare(files, labels) + "\n".join(facts) + "\n"
    print("\n".join(facts))
    s.publish(panels, numbers=numbers,
              title="Fig. 3 at small scale: linear interpolation, small to large batch (digits)")


def paper(p: c.Plan) -> None:
    runs = c.batch_runs(small=False)
    trained = {key: p.train(run, hours=6) for key, run in runs.items()}
    small_bs, large_bs = c.PAPER_BATCHES
    files, labels = [], []
    for wd in c.WEIGHT_DECAYS:
        ends = {"small": trained[small_bs, wd], "large": trained[large_bs, wd]}
        jobs = [job for job, _ in ends.values()]
        for centre, other in (("small", "large"), ("large", "small")):
            files.append(p.grid(f"interp_wd{wd:g}_from_{centre}", model="vgg9", model_file=ends[centre][1],
                                x=PAPER_LINE, target=ends[other][1], after=jobs, hours=1,
                                extra=["--dir_type", "states"]))
            labels.append(f"wd={wd:g},centre={centre}-batch")
    p.compare(files, labels, after=p.grids())


if __name__ == "__main__":
    raise SystemExit(c.main(__doc__, figure=FIGURE, small=small, paper=paper))
