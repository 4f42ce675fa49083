"""Name -> constructor registry for the model zoo (in the style of timm).

Each architecture variant is one small function decorated with :func:`register_model`; the
function's name is the public model name. :func:`create_model` builds a model by name and
:func:`list_models` lists every registered name.
"""
from __future__ import annotations

import difflib
from typing import Callable, TypeVar

import torch.nn as nn

from ..errors import ModelError

ModelFn = Callable[..., nn.Module]
F = TypeVar("F", bound=ModelFn)

# Insertion-ordered map from public name to the function that builds the model.
_model_entrypoints: dict[str, ModelFn] = {}


def register_model(fn: F) -> F:
    """Register ``fn`` under its ``__name__`` so :func:`create_model` can build it.

    Args:
        fn: A function ``fn(*, num_classes: int) -> nn.Module``.

    Returns:
        ``fn`` itself, unchanged, so this can be used as a decorator.

    Raises:
        ValueError: If a model with the same name is already registered (a programming error).
    """
    name = fn.__name__
    if name in _model_entrypoints:
        raise ValueError(f"model name {name!r} is registered twice; rename one of the functions")
    _model_entrypoints[name] = fn
    return fn


def list_models() -> list[str]:
    """Return every registered model name, sorted alphabetically.

    Returns:
        The sorted list of names accepted by :func:`create_model`.
    """
    return sorted(_model_entrypoints)


def _check_num_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(
            f"num_classes must be a positive integer, got {num_classes!r}; "
            "pass the number of classes of the dataset (10 for CIFAR-10)"
        )
    return num_classes


def _unknown_name_message(name: str) -> str:
    names = list_models()
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(repr(lowered[c]) for c in close)}? " if close else ""
    return (
        f"unknown model name {name!r}: expected one of the {len(names)} registered models; "
        f"{hint}run models.list_models() or see the model list in the README for every name"
    )


def create_model(name: str, *, num_classes: int = 10) -> nn.Module:
    """Build a registered model with PyTorch's default parameter initialisation.

    Construction honours the ambient default device, so ``with torch.device("meta"):``
    builds a model without allocating memory for its weights.

    Args:
        name: A registered model name, e.g. ``"resnet56"`` (see :func:`list_models`).
        num_classes: Output size of the classification head.

    Returns:
        The freshly constructed model (in training mode, as ``nn.Module`` defaults to).

    Raises:
        ModelError: If ``name`` is not registered (the message lists close matches) or
            ``num_classes`` is not a positive integer.
        TypeError: If ``name`` is not a string.
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    fn = _model_entrypoints.get(name)
    if fn is None:
        raise ModelError(_unknown_name_message(name))
    return fn(num_classes=_check_num_classes(num_classes))
