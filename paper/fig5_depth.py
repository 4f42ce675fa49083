"""Fig. 5: without skip connections, depth makes the loss surface chaotic; with them it stays smooth.

The paper's claim (Li et al. 2018, Fig. 5, Sec. 6): ResNet-20, -56 and -110 all have smooth,
convex-looking filter-normalized surfaces; without skip connections the surface of ResNet-20 is
still convex-looking, but those of ResNet-56 and ResNet-110 turn chaotic, and deeper plain
networks train worse.

small scale: plain networks of growing depth, ResNet-20/32/44-noshort, beside ResNet-20 with skip
connections, trained on the digits (12 epochs, batch 64, the last 2 at a tenth of the learning
rate); 2D filter-normalized surfaces on 17 x 17 points of [-1, 1] x [-1, 1] and 1D curves on 41
points of an automatic range, evaluated on an eighth of the training set. ResNet-56 and -110
are left out on the CPU (the zoo has the 32- and 44-layer plain networks of the paper's
appendix); the ResNet-20 pair is shared with fig1_skip_connections.py.
paper scale: ResNet-20/56/110 with and without skip connections on CIFAR-10 (300 epochs), surfaces
on 51 x 51 points over [-1, 1] x [-1, 1].
"""
from __future__ import annotations

import _common as c

FIGURE = "fig5_depth"
SMALL_MODELS = {"resnet20": "ResNet-20", "resnet20_noshort": "ResNet-20-noshort",
                "resnet32_noshort": "ResNet-32-noshort", "resnet44_noshort": "ResNet-44-noshort"}
PAPER_HOURS = {20: (4, 1), 56: (8, 2), 110: (16, 4)}  # depth -> time limits (training on 1 GPU, surface on 4)


def small(s: c.SmallScale) -> None:
    files, numbers = s.standard_study(list(SMALL_MODELS), list(SMALL_MODELS))
    panels = [(c.contour_png(f), label) for f, label in zip(files, SMALL_MODELS.values())]
    s.publish(panels, ncols=2, numbers=numbers,
              title="Fig. 5 at small scale: depth of plain networks, and ResNet-20 with skips (digits)")


def paper(p: c.Plan) -> None:
    p.trained_surfaces({f"resnet{depth}{shortcut}": hours for shortcut in ("", "_noshort")
                        for depth, hours in PAPER_HOURS.items()})


if __name__ == "__main__":
    raise SystemExit(c.main(__doc__, figure=FIGURE, small=small, paper=paper))
