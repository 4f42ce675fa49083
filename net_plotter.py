"""Directions in weight space, under the reference code's module name (`import net_plotter`).

A thin re-export of `loss_landscape_toolkit.directions`, plus the reference's naming functions,
for scripts and notebooks written for the reference; new code imports the package.
"""
from loss_landscape_toolkit import directions as _directions
from loss_landscape_toolkit._naming import name_direction_file, name_surface_file
from loss_landscape_toolkit.directions import *

__all__ = [*_directions.__all__, "name_direction_file", "name_surface_file"]
