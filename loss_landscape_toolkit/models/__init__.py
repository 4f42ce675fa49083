"""Model zoo of the loss-landscape toolkit.

Build a model by name with :func:`create_model` and list every name with :func:`list_models`::

    from loss_landscape_toolkit.models import create_model, list_models
    net = create_model("resnet56", num_classes=10)

Importing the architecture modules below registers their variants.
"""
from __future__ import annotations

from . import densenet, resnet, vgg  # imported for their @register_model side effects
from ._registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
