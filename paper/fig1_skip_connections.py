"""Fig. 1: skip connections turn the chaotic loss surface of a deep network into a smooth bowl.

The paper's claim (Li et al. 2018, Fig. 1, Sec. 6): the filter-normalized 2D surface of ResNet-56
is smooth and nearly convex around its minimizer; the same network without skip connections
(ResNet-56-noshort) has a chaotic surface with sharp, non-convex regions.

small scale: ResNet-20 and ResNet-20-noshort trained on the digits (12 epochs, batch 64, the
last 2 at a tenth of the learning rate), 2D filter-normalized surfaces on 17 x 17 points of
[-1, 1] x [-1, 1] and 1D curves on 41 points of an automatic range (for the widths), evaluated
on an eighth of the training set; minutes on 2 CPU cores.
At depth 20 the paper itself (Fig. 5) finds both surfaces convex-looking; the deeper plain
networks are in fig5_depth.py.
paper scale: both trained on CIFAR-10 with the paper's recipe (300 epochs), surfaces on
51 x 51 points over [-1, 1] x [-1, 1] on the whole training set.
"""
from __future__ import annotations

import _common as c

FIGURE = "fig1_skip_connections"
SMALL_MODELS = {"resnet20": "ResNet-20", "resnet20_noshort": "ResNet-20-noshort"}
PAPER_MODELS = ("resnet56", "resnet56_noshort")


def small(s: c.SmallScale) -> None:
    files, numbers = s.standard_study(list(SMALL_MODELS), list(SMALL_MODELS))
    panels = [(png(f), f"{label}: {name}")
              for png, name in ((c.surface3d_png, "3D surface"), (c.contour_png, "contours"))
              for f, label in zip(files, SMALL_MODELS.values())]
    s.publish(panels, ncols=2, numbers=numbers,
              title="Fig. 1 at small scale: with and without skip connections (digits)")


def paper(p: c.Plan) -> None:
    p.trained_surfaces(dict.fromkeys(PAPER_MODELS, (8, 2.0)))


if __name__ == "__main__":
    raise SystemExit(c.main(__doc__, figure=FIGURE, small=small, paper=paper))
