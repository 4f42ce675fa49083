"""Print the comparable numbers of several surface files side by side (widths, curvatures, ...).

Entry point for a checkout (`python compare_surfaces.py --help`); installed, the same program is
`compare_surfaces`.
"""
from loss_landscape_toolkit.cli.compare import main

if __name__ == "__main__":
    raise SystemExit(main())
