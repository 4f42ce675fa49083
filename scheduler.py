"""Which grid points remain and how they are handed out, under the reference code's module name.

A thin re-export of `loss_landscape_toolkit.parallel.scheduler`; new code imports the package.
"""
from loss_landscape_toolkit.parallel.scheduler import *
from loss_landscape_toolkit.parallel.scheduler import __all__ as __all__
