"""Export a 2D surface to ParaView (.vtp) and, with --obj, to a Wavefront .obj mesh.

Entry point for a checkout (`python h52vtp.py --help`); installed, the same program is `h52vtp`.
"""
from loss_landscape_toolkit.cli.h52vtp import main

if __name__ == "__main__":
    raise SystemExit(main())
