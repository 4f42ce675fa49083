"""Fig. 4: with filter normalization, small batches give wider minimizers, with or without weight decay.

The paper's claim (Li et al. 2018, Fig. 4, Sec. 5): along filter-normalized random directions
the large-batch minimizers are sharper than the small-batch ones both without and with weight
decay (unlike the unnormalized interpolation of fig3_linear_interpolation.py, whose verdict flips
with weight decay), and the sharper minimizer has the higher test error: filter normalization
makes sharpness comparable across these networks.

small scale: the four ResNet-20 runs of fig3 (batch 32 and 512, weight decay 0 and 5e-4, 20
epochs on the digits, the last 2 at a tenth of the learning rate); 1D filter-normalized curves on
81 points of [-1, 1] (a quarter of the training set), and 2D surfaces on 17 x 17 points of
[-1, 1] x [-1, 1] (an eighth).
paper scale: the four VGG-9 runs (SGD, batch 128 and 8192, weight decay 0 and 5e-4, 300 epochs
on CIFAR-10); 1D on 51 points of [-1, 1] and 2D on 51 x 51 points of [-1, 1] x [-1, 1].
"""
from __future__ import annotations

import _common as c

FIGURE = "fig4_batch_size_weight_decay"
SMALL_LINE = "-1:1:81"


def small(s: c.SmallScale) -> None:
    runs = c.batch_runs(small=True)
    lines, planes, labels, errors = [], [], [], []
    for (bs, wd), run in runs.items():
        checkpoint, label, tag = s.train(run), c.run_label(bs, wd), c.run_tag(bs, wd)
        lines.append(s.surface(f"line_{tag}", model=run.model, model_file=checkpoint, x=SMALL_LINE, data_split=4))
        planes.append(s.surface(f"plane_{tag}", model=run.model, model_file=checkpoint, x=c.SMALL_GRID,
                                y=c.SMALL_GRID, data_split=c.SMALL_SPLIT))
        labels.append(label)
        errors.append(f"test error of {label}: {c.final_test_error(checkpoint):.2f}%")
    print("\n".join(errors))
    numbers = s.compare(lines, labels) + s.compare(planes, labels, log="compare_2d") + "\n".join(errors) + "\n"
    panels = [(c.plot_files(f, two_d=False)[0], f"1D, {label}") for f, label in zip(lines, labels)]
    panels += [(c.contour_png(f), f"2D, {label}") for f, label in zip(planes, labels)]
    s.publish(panels, ncols=4, numbers=numbers,
              title="Fig. 4 at small scale: filter-normalized, batch 32 vs 512, weight decay 0 vs 5e-4 (digits)")


def paper(p: c.Plan) -> None:
    lines, planes, labels = [], [], []
    for (bs, wd), run in c.batch_runs(small=False).items():
        (job, checkpoint), label, tag = p.train(run, hours=6), c.run_label(bs, wd), c.run_tag(bs, wd)
        lines.append(p.grid(f"line_{tag}", model=run.model, model_file=checkpoint, x="-1:1:51", after=[job],
                            hours=0.5))
        planes.append(p.grid(f"plane_{tag}", model=run.model, model_file=checkpoint, x="-1:1:51", y="-1:1:51",
                             after=[job], hours=3))
        labels.append(label)
    grids = p.grids()
    p.compare(lines, labels, after=grids)
    p.cpu("compare_2d", [c.Command("compare_surfaces.py", ("-f", *planes, "--labels", *labels))], after=grids,
          stage="numbers side by side")


if __name__ == "__main__":
    raise SystemExit(c.main(__doc__, figure=FIGURE, small=small, paper=paper))
