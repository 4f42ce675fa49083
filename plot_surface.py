"""Loss surface of a network along one or two directions, written to HDF5.

Entry point for a checkout (`python plot_surface.py --help`); installed, the same program is `plot_surface`.
"""
from loss_landscape_toolkit.cli.plot_surface import main

if __name__ == "__main__":
    raise SystemExit(main())
