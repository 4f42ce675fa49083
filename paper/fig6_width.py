"""Fig. 6: wider networks have flatter, more convex-looking minimizers.

The paper's claim (Li et al. 2018, Fig. 6, Sec. 6): widening ResNet-56 (k = 1, 2, 4, 8 times the
filters per layer) makes its filter-normalized surface flatter and wider, with or without skip
connections, and removes the chaotic regions of the plain network; test error falls with width.

small scale: ResNet-20 without skip connections at three widths k = 1, 2, 4 of a 4/8/16-channel
base (paper/small_models.py; k = 4 is the zoo's resnet20_noshort), trained on the digits
(12 epochs, batch 64, the last 2 at a tenth of the learning rate); 2D filter-normalized surfaces
on 17 x 17 points of [-1, 1] x [-1, 1] and 1D curves on 41 points of an automatic range.
paper scale: ResNet-56 and Wide-ResNet-56 (k = 2, 4, 8) with and without skip connections on
CIFAR-10 (300 epochs), surfaces on 51 x 51 points over [-1, 1] x [-1, 1].
"""
from __future__ import annotations

import _common as c

FIGURE = "fig6_width"
FACTORIES = "paper/small_models.py"
SMALL_MODELS = {f"{FACTORIES}:resnet20_noshort_w4": "k = 1 (4/8/16 channels)",
                f"{FACTORIES}:resnet20_noshort_w8": "k = 2 (8/16/32)",
                "resnet20_noshort": "k = 4 (16/32/64: ResNet-20-noshort)"}
PAPER_HOURS = {1: (8, 2), 2: (16, 4), 4: (36, 9), 8: (72, 18)}  # k -> time limits (training on 1 GPU, surface on 4)


def small(s: c.SmallScale) -> None:
    files, numbers = s.standard_study(list(SMALL_MODELS), [f"k={k}" for k in (1, 2, 4)])
    panels = [(c.contour_png(f), label) for f, label in zip(files, SMALL_MODELS.values())]
    s.publish(panels, numbers=numbers, title="Fig. 6 at small scale: width of ResNet-20-noshort (digits)")


def paper(p: c.Plan) -> None:
    p.trained_surfaces({(f"resnet56{shortcut}" if k == 1 else f"wrn56_{k}{shortcut}"): hours
                        for shortcut in ("", "_noshort") for k, hours in PAPER_HOURS.items()})


if __name__ == "__main__":
    raise SystemExit(c.main(__doc__, figure=FIGURE, small=small, paper=paper))
