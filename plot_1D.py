"""Re-plot 1D surface files: loss and accuracy along the direction, and several runs overlaid.

Entry point for a checkout (`python plot_1D.py --help`); installed, the same program is `plot_1D`.
"""
from loss_landscape_toolkit.cli.plot_1d import main

if __name__ == "__main__":
    raise SystemExit(main())
