"""Loss landscapes of neural nets (Li et al., NeurIPS 2018): directions, surfaces, curvature maps,
trajectories and their figures, compatible with the paper's reference code."""
from ._version import __version__

__all__ = ["__version__"]
