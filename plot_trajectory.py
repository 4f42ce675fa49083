"""Optimization path of a training run in the plane of its two principal components.

Entry point for a checkout (`python plot_trajectory.py --help`); installed, the same program is `plot_trajectory`.
"""
from loss_landscape_toolkit.cli.plot_trajectory import main

if __name__ == "__main__":
    raise SystemExit(main())
