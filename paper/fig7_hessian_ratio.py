"""Fig. 7: the convex-looking surfaces really are nearly convex: |lambda_min / lambda_max| maps.

The paper's claim (Li et al. 2018, Fig. 7, Sec. 6): a 2D plot can hide non-convexity, so at
every point of the same plane the Hessian's extreme eigenvalues are computed. Around the
minimizers of networks with convex-looking surfaces (ResNet-56) the ratio |lambda_min/lambda_max|
is near 0 (blue in the maps: little negative curvature); networks with chaotic surfaces
(ResNet-56-noshort, deeper plain nets) show large regions where it is large (yellow/red), i.e.
strongly non-convex. The convexity seen in the surface plots is therefore real, not an artifact
of the projection.

small scale: ResNet-20 (smooth, convex-looking surface in fig1/fig5) and ResNet-44-noshort (the
least convex-looking one of fig5_depth.py), trained on the digits; lambda_max and lambda_min by
Lanczos (relative tolerance 1e-2) on 5 x 5 points of the surfaces' plane [-1, 1] x [-1, 1], each
Hessian over a 32nd of the training set (44 images): a Hessian point costs a few seconds here.
paper scale: ResNet-56, ResNet-56-noshort and ResNet-110-noshort on CIFAR-10; 21 x 21 points of
[-1, 1] x [-1, 1], each Hessian over a tenth of the training set (the paper does not state its
grid; this is our README's setting).
"""
from __future__ import annotations

import _common as c

FIGURE = "fig7_hessian_ratio"
SMALL_MODELS = {"resnet20": "ResNet-20", "resnet44_noshort": "ResNet-44-noshort"}
SMALL_GRID = "-1:1:5"
PAPER_MODELS = {"resnet56": 8, "resnet56_noshort": 8, "resnet110_noshort": 16}  # -> hours of training


def small(s: c.SmallScale) -> None:
    files = []
    for model in SMALL_MODELS:
        checkpoint = s.train(c.small_run(model))
        files.append(s.hessian(f"{model}_eig", model=model, model_file=checkpoint, x=SMALL_GRID, y=SMALL_GRID,
                               data_split=32, extra=["--tol", "1e-2"]))
    numbers = s.compare(files, list(SMALL_MODELS))
    panels = [(c.plot_files(f, two_d=True, hessian=True)[0], label) for f, label in zip(files, SMALL_MODELS.values())]
    s.publish(panels, numbers=numbers, title="Fig. 7 at small scale: |lambda_min / lambda_max| (digits)")


def paper(p: c.Plan) -> None:
    files = []
    for model, hours in PAPER_MODELS.items():
        job, checkpoint = p.train(c.Training(model), hours=hours)
        files.append(p.grid(f"{model}_eig", program="plot_hessian_eigen.py", model=model, model_file=checkpoint,
                            x="-1:1:21", y="-1:1:21", after=[job], ranks=8, hours=12, extra=["--data_split", "10"]))
    p.compare(files, list(PAPER_MODELS), after=p.grids())


if __name__ == "__main__":
    raise SystemExit(c.main(__doc__, figure=FIGURE, small=small, paper=paper))
