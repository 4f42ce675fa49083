"""Directions in weight space, under the reference code's module name (`import net_plotter`).

A thin re-export of `loss_landscape_toolkit.directions` for scripts and notebooks written for
the reference; new code imports the package.
"""
from loss_landscape_toolkit.directions import *  # noqa: F401,F403
from loss_landscape_toolkit.directions import __all__  # noqa: F401
