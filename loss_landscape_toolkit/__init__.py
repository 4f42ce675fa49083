"""Loss landscapes of neural nets (Li et al., NeurIPS 2018): directions, surfaces, curvature maps,
trajectories and their figures, compatible with the paper's reference code.

From Python::

    from loss_landscape_toolkit import compute_surface, create_model
    surf = compute_surface(create_model("resnet20"), (images, labels), x=xs, y=ys)

The command-line programs are in :mod:`.cli` (``plot_surface``, ``plot_1D``, ...). Importing the
package itself is light: torch is imported when a name that needs it is first used.
"""
from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

_LAZY = {  # public name -> module that defines it
    "compute_surface": "surface",
    "Surface": "surface",
    "create_model": "models",
    "list_models": "models",
    "register_model": "models",
    "load_model": "models.loading",
    "load_eval_data": "data",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
