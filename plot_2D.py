"""Re-plot 2D surface files: contours, filled contours, heat map, 3D surface, trajectories.

Entry point for a checkout (`python plot_2D.py --help`); installed, the same program is `plot_2D`.
"""
from loss_landscape_toolkit.cli.plot_2d import main

if __name__ == "__main__":
    raise SystemExit(main())
