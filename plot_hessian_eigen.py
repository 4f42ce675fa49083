"""Curvature maps: the Hessian's largest and smallest eigenvalues at every point of a grid.

Entry point for a checkout (`python plot_hessian_eigen.py --help`); installed, the same program is `plot_hessian_eigen`.
"""
from loss_landscape_toolkit.cli.plot_hessian_eigen import main

if __name__ == "__main__":
    raise SystemExit(main())
