"""Pickled ``DataLoader`` files (the reference's ``--trainloader``/``--testloader``), read once.

Unlike every other source here, these files are unpickled with ``torch.load(weights_only=False)``,
which runs code stored in them; they are for loaders the user saved and trusts.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError, one_line
from ._common import EvalData, _collect_batches, _num_classes


def load_pickled_loader(path: str, *, target_key: str = "labels") -> EvalData:
    """Load a pickled ``DataLoader`` (the reference's ``--trainloader``/``--testloader``) once.

    The file is read with ``torch.load(path, weights_only=False)``, which EXECUTES CODE stored
    in the pickle: only load files you made yourself or otherwise trust. The loader is iterated
    once and its batches are concatenated as they come (its own transforms and order apply).

    Args:
        path: File written by ``torch.save(loader, path)``.
        target_key: the target's key when the loader yields dicts (see :func:`load_eval_data`).

    Returns:
        The data; ``num_classes`` is the largest label + 1.

    Raises:
        DataError: If the file is missing or cannot be unpickled, or the loader does not yield
            ``(x, y)`` batches of float inputs and integer labels.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(
            f"pickled data loader not found: {file.absolute()}; expected a file written by "
            f"torch.save(loader, path)"
        )
    try:
        loader = torch.load(file, weights_only=False)
    except Exception as exc:
        raise DataError(
            f"cannot unpickle data loader {file.absolute()} ({one_line(exc, 200)}); expected a file "
            f"written by torch.save(loader, path) with the classes it uses importable"
        ) from None
    what = f"pickled loader {file.absolute()}"
    if not hasattr(loader, "__iter__"):
        raise DataError(f"{what} holds a {type(loader).__name__}, expected an iterable DataLoader")
    x, y = _collect_batches(loader, what, None, target_key)
    return EvalData(
        x=x,
        y=y,
        num_classes=_num_classes(loader, y, what),
        description=f"{what} ({len(y)} items, transforms as pickled)",
    )
