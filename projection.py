"""PCA directions of a training path and its projection, under the reference code's module name.

A thin re-export of `loss_landscape_toolkit.projection`; new code imports the package.
"""
from loss_landscape_toolkit.projection import *
from loss_landscape_toolkit.projection import __all__ as __all__
