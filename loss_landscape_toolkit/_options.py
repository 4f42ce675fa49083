"""The closed sets of choices shared by the library and the command line (no heavy imports)."""
from __future__ import annotations

NORMS = ("filter", "layer", "weight", "dfilter", "dlayer", "none")  # direction normalizations
IGNORES = ("biasbn", "none")  # biasbn: no movement of biases and BatchNorm parameters
DIR_TYPES = ("weights", "states")  # parameters only, or every state_dict entry
LOSSES = ("crossentropy", "mse", "softmax_mse")  # built-in losses (see objective.py)
FORMATS = ("pdf", "png", "svg")  # figure formats
PARAM_SETS = ("dim>1", "all")  # parameters of the Hessian
EIGEN_METHODS = ("lanczos", "eigsh", "reference")
PROJ_METHODS = ("cos", "lstsq")  # projection of a trajectory onto two directions
OPTIMIZERS = ("sgd", "adam")
DEFAULT_SEED = 123  # the reference's fixed seed of the random directions
DATAPATH_ENV = "LANDSCAPE_DATAPATH"  # where CIFAR-10 is when --datapath is not given
DEFAULT_DATAPATH = "cifar10/data"  # relative to the working folder
DPI = 300  # figure resolution, as the reference
