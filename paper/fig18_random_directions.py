"""Fig. 18 (appendix): 1D plots along different random directions look alike.

The paper's claim (Li et al. 2018, appendix, repeatability of the loss curves): a plot along one
random filter-normalized direction is representative, because the loss along several
independent random directions gives nearly the same curve (same shape, same width and
curvature), both for small-batch and large-batch minimizers.

small scale: the ResNet-20 of fig1_skip_connections.py (digits); the loss along five
independent filter-normalized random directions (--idx 1..5) on 41 points of [-1, 1] each, a
quarter of the training set, overlaid by plot_1D.py.
paper scale: ResNet-56 on CIFAR-10 (300 epochs), ten directions on 51 points of [-1, 1].
"""
from __future__ import annotations

import _common as c

FIGURE = "fig18_random_directions"
SMALL_MODEL, PAPER_MODEL = "resnet20", "resnet56"
SMALL_DIRECTIONS, PAPER_DIRECTIONS = 5, 10
SMALL_LINE, PAPER_LINE = "-1:1:41", "-1:1:51"


def small(s: c.SmallScale) -> None:
    checkpoint = s.train(c.small_run(SMALL_MODEL))
    files = [s.surface(f"direction_{idx}", model=SMALL_MODEL, model_file=checkpoint, x=SMALL_LINE, data_split=4,
                       extra=["--idx", str(idx)]) for idx in range(1, SMALL_DIRECTIONS + 1)]
    overlay = f"{files[0]}_1d_loss_err_repeat.png"
    s.run("plot_1D.py", ["-f", *files, "--format", "png", "--dpi", str(c.SMALL_DPI)], log="overlay", outputs=[overlay])
    numbers = s.compare(files, [f"direction {idx}" for idx in range(1, SMALL_DIRECTIONS + 1)])
    s.publish([(overlay, f"ResNet-20, {SMALL_DIRECTIONS} random directions")], numbers=numbers,
              title="Fig. 18 at small scale: several random directions (digits)")


def paper(p: c.Plan) -> None:
    job, checkpoint = p.train(c.Training(PAPER_MODEL), hours=8)
    files = [p.grid(f"direction_{idx}", model=PAPER_MODEL, model_file=checkpoint, x=PAPER_LINE, after=[job],
                    hours=0.5, extra=["--idx", str(idx)]) for idx in range(1, PAPER_DIRECTIONS + 1)]
    grids = p.grids()
    p.cpu("overlay", [c.Command("plot_1D.py", ("-f", *files))], after=grids, stage="figures")
    p.compare(files, [f"direction_{idx}" for idx in range(1, PAPER_DIRECTIONS + 1)], after=grids)


if __name__ == "__main__":
    raise SystemExit(c.main(__doc__, figure=FIGURE, small=small, paper=paper))
