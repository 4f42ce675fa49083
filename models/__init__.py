"""The model zoo for a checkout (`from models import create_model`).

A thin re-export of `loss_landscape_toolkit.models`; new code imports the package.
"""
from loss_landscape_toolkit.models import *
from loss_landscape_toolkit.models import __all__ as __all__
