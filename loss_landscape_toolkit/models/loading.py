"""Build models from a name or a user factory, and load checkpoints into them.

A model *spec* is one of

* a registered name from the model zoo, e.g. ``resnet56`` (see ``models.list_models()``);
* ``path/to/file.py:factory``: a Python file and the name of a function (or class) in it;
* ``pkg.module:factory``: a dotted module importable from ``sys.path`` and a name in it.

A factory is called with no arguments and must return an ``nn.Module``.

Checkpoints are read with ``torch.load(..., weights_only=True)``: either a dict holding the
weights under ``'state_dict'`` (what the reference training code writes) or a bare state_dict.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from collections import OrderedDict
from typing import Any, Mapping

import torch
import torch.nn as nn

from .._imports import import_object, is_spec, on_sys_path
from ..errors import ModelError, one_line
from ._registry import create_model

_RESAVE_HINT = "re-save only the weights with torch.save({'state_dict': model.state_dict()}, path)"
_DATA_PARALLEL_PREFIX = "module."


# --------------------------------------------------------------------------------------------
# Building models
# --------------------------------------------------------------------------------------------


def _build_custom(spec: str) -> nn.Module:
    """Build a model from a ``file.py:factory`` or ``pkg.module:factory`` spec."""
    factory, folder = import_object(spec, kind="model", error=ModelError)
    try:
        with on_sys_path(folder):
            model = factory()
    except Exception as exc:
        raise ModelError(
            f"model factory {spec!r} raised {one_line(exc)} when called with no arguments; "
            "make it callable as factory() and fix the error"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"model factory {spec!r} returned a {type(model).__name__}, expected a torch.nn.Module; "
            "make the factory return the network itself"
        )
    return model


def build_model(spec: str, *, num_classes: int = 10) -> nn.Module:
    """Build a freshly initialised model from a spec.

    Args:
        spec: A registered model name (``"resnet56"``), ``"path/to/file.py:factory"`` or
            ``"pkg.module:factory"``. A factory is called with no arguments.
        num_classes: Output size of the head for registered models. Custom factories are
            called without arguments, so they decide their own head size and this is ignored.

    Returns:
        The model, in training mode with default initialisation.

    Raises:
        ModelError: For an unknown name (with close matches), a missing or non-importable
            file or module, a missing or non-callable factory, a factory that raises, or a
            factory that returns something other than an ``nn.Module``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelError(
            f"model spec must be a non-empty string, got {spec!r}; "
            "pass a model name such as 'resnet56' or 'path/to/file.py:factory'"
        )
    if is_spec(spec):
        return _build_custom(spec)
    try:
        return create_model(spec, num_classes=num_classes)
    except ModelError as exc:
        if "unknown model name" not in str(exc):
            raise
        raise ModelError(
            f"{exc} (a custom model can be given as 'path/to/file.py:factory' or 'pkg.module:factory')"
        ) from exc


# --------------------------------------------------------------------------------------------
# Reading checkpoints
# --------------------------------------------------------------------------------------------


def _strip_data_parallel(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix that ``nn.DataParallel`` puts on every key, if present.

    The result is an ``OrderedDict``; the ``_metadata`` that ``state_dict()`` attaches (module
    versions used by e.g. BatchNorm when loading) is carried over with the same prefix removed.
    """
    metadata = getattr(state, "_metadata", None)
    keys = list(state)
    strip = bool(keys) and all(k.startswith(_DATA_PARALLEL_PREFIX) for k in keys)
    n = len(_DATA_PARALLEL_PREFIX)
    out: OrderedDict[str, torch.Tensor] = OrderedDict(
        (k[n:] if strip else k, v) for k, v in state.items()
    )
    if isinstance(metadata, Mapping):
        if strip:
            new_meta: OrderedDict[str, Any] = OrderedDict()
            for prefix, info in metadata.items():
                if prefix == "module":
                    new_meta[""] = info
                elif prefix.startswith(_DATA_PARALLEL_PREFIX):
                    new_meta[prefix[n:]] = info
            metadata = new_meta
        out._metadata = OrderedDict(metadata)  # type: ignore[attr-defined]
    return out


def _torch_load(path: str) -> Any:
    """``torch.load`` with ``weights_only``, every failure as one line."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _unreadable(path, exc) from exc


def _unreadable(path: str, exc: Exception) -> ModelError:
    """The error for a file that ``torch.load`` refused, saying what the file is when we can tell."""
    hdf5 = _hdf5_description(path)
    if hdf5:
        return ModelError(
            f"checkpoint {path!r} is {hdf5}, not a PyTorch checkpoint; --model_file (and --model_file2/3) "
            "needs the network's weights saved by torch.save, a .t7 or .pt file such as model_300.t7"
        )
    reason = one_line(exc)
    if isinstance(exc, pickle.UnpicklingError) and "weights only load failed" in str(exc).lower():
        if _looks_like_torch_file(path):
            return ModelError(
                f"checkpoint {path!r} holds Python objects that weights_only loading refuses "
                f"(for example a whole model saved with torch.save(model)); {_RESAVE_HINT}"
            )
        reason = "it starts like neither a zip archive nor a pickle stream"  # e.g. a text file
    return ModelError(
        f"checkpoint {path!r} is not a readable torch file ({reason}); expected a checkpoint written "
        "by torch.save({'state_dict': model.state_dict()}, path); check the --model_file path"
    )


def _looks_like_torch_file(path: str) -> bool:
    """Whether a file starts as torch.save writes: a zip archive, or (the legacy format) a
    pickle stream of protocol 2 or later."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return head == b"PK" or head[:1] == b"\x80"


def _hdf5_description(path: str) -> str | None:
    """What an HDF5 file is, in a few words (a direction, surface or projection file when it has
    their datasets), or None when ``path`` is not an HDF5 file."""
    import h5py  # only needed on this error path

    try:
        if not h5py.is_hdf5(path):
            return None
        with h5py.File(path, "r") as f:
            keys = set(f)
    except Exception:
        return "an HDF5 file"
    for key, kind in (("xdirection", "direction"), ("xcoordinates", "surface"), ("proj_xcoord", "projection")):
        if key in keys:
            return f"an HDF5 file (a {kind} file of this toolkit or the reference code)"
    return "an HDF5 file"


def load_checkpoint_state(path: str) -> dict[str, torch.Tensor]:
    """Read the state_dict stored in a checkpoint file.

    The file is read with ``torch.load(path, map_location="cpu", weights_only=True)``. It may
    hold a dict with the weights under ``'state_dict'`` (other entries such as ``'epoch'`` and
    ``'acc'`` are ignored) or a bare state_dict. A ``module.`` prefix on every key (saved from
    ``nn.DataParallel``) is removed.

    Args:
        path: Path of the checkpoint file.

    Returns:
        The state_dict, key -> tensor, in the order stored in the file.

    Raises:
        ModelError: If the file is missing, is a directory, is not a readable torch file, needs
            more than ``weights_only`` allows (e.g. a whole pickled model), or holds no
            state_dict of tensors.
    """
    if not os.path.exists(path):
        raise ModelError(
            f"checkpoint file {path!r} does not exist; expected a file written by torch.save, "
            "check the --model_file path"
        )
    if os.path.isdir(path):
        raise ModelError(
            f"checkpoint path {path!r} is a directory; expected a checkpoint file "
            "written by torch.save, e.g. model_300.t7 inside it"
        )
    loaded = _torch_load(path)
    if isinstance(loaded, Mapping) and "state_dict" in loaded:
        state = loaded["state_dict"]
        where = "its 'state_dict' entry"
    else:
        state = loaded
        where = "it"
    if not isinstance(state, Mapping):
        raise ModelError(
            f"checkpoint {path!r} does not hold a state_dict: {where} is a {type(state).__name__}; "
            f"expected a dict of tensors, {_RESAVE_HINT}"
        )
    if not state:
        raise ModelError(f"checkpoint {path!r} holds an empty state_dict; {_RESAVE_HINT}")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        shown = ", ".join(repr(k) for k in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise ModelError(
            f"checkpoint {path!r} does not hold a state_dict: {where} has {len(bad)} entries that are "
            f"not string -> tensor ({shown}); expected a dict with a 'state_dict' entry or a bare "
            f"state_dict, {_RESAVE_HINT}"
        )
    return _strip_data_parallel(state)


# --------------------------------------------------------------------------------------------
# Loading weights into a model
# --------------------------------------------------------------------------------------------


def _fmt_shape(shape: torch.Size) -> str:
    dims = tuple(int(d) for d in shape)
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def _is_batch_counter(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == "num_batches_tracked"


def load_state_into(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Copy a state_dict into ``model``, requiring an exact match of keys and shapes.

    A checkpoint without any BatchNorm ``num_batches_tracked`` counter (written by PyTorch
    < 0.4, like the reference's published ones) gets them filled in with 0, as PyTorch itself
    does for such files; they take no part in evaluation. A checkpoint with only some of
    them is a mismatch like any other.

    Args:
        model: The model to fill in place.
        state: Key -> tensor, e.g. from :func:`load_checkpoint_state`.
        source: Where ``state`` came from (a file name), used in error messages.

    Returns:
        None; ``model`` is modified in place.

    Raises:
        ModelError: If a key is missing, unexpected, or has a different shape. The message
            names the first difference in the model's state_dict order, gives both shapes,
            and counts the missing and unexpected keys.
    """
    expected = model.state_dict()
    metadata = getattr(state, "_metadata", None)
    state = OrderedDict(state)
    if metadata is not None:
        state._metadata = metadata  # type: ignore[attr-defined]
    if not any(_is_batch_counter(k) for k in state):
        # A pre-0.4 checkpoint: it has no BatchNorm counters at all, so supply them.
        for key, tensor in expected.items():
            if _is_batch_counter(key):
                state[key] = torch.zeros(tensor.shape, dtype=tensor.dtype)
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ModelError(
                f"checkpoint {source!r} entry {key!r} is a {type(value).__name__}, not a tensor; "
                f"expected a state_dict of tensors, {_RESAVE_HINT}"
            )

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    first: str | None = None
    for key, tensor in expected.items():
        if key not in state:
            first = f"{key!r} is missing from the checkpoint (model has shape {_fmt_shape(tensor.shape)})"
            break
        if state[key].shape != tensor.shape:
            first = (
                f"{key!r}: checkpoint has shape {_fmt_shape(state[key].shape)}, "
                f"model has {_fmt_shape(tensor.shape)}"
            )
            break
    if first is None and unexpected:
        key = unexpected[0]
        first = f"{key!r} is in the checkpoint (shape {_fmt_shape(state[key].shape)}) but not in the model"
    if first is not None:
        raise ModelError(
            f"checkpoint {source!r} does not fit the model: first difference at {first} "
            f"({len(missing)} keys missing, {len(unexpected)} unexpected). "
            "Is --model the architecture this checkpoint was trained with?"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(
            f"checkpoint {source!r} could not be copied into the model ({one_line(exc)}); "
            "check that --model is the architecture this checkpoint was trained with"
        ) from exc


def load_model(spec: str, model_file: str | None = None, *, num_classes: int = 10) -> nn.Module:
    """Build a model and, if given, load a checkpoint into it.

    Args:
        spec: Model spec, see :func:`build_model`.
        model_file: Checkpoint to load (see :func:`load_checkpoint_state`); ``None`` keeps the
            default initialisation.
        num_classes: Output size of the head for registered models.

    Returns:
        The model in ``eval()`` mode.

    Raises:
        ModelError: If the model cannot be built, or the checkpoint cannot be read or does
            not fit the model.
    """
    model = build_model(spec, num_classes=num_classes)
    if model_file is not None:
        state = load_checkpoint_state(model_file)
        load_state_into(model, state, source=model_file)
    return model.eval()



def state_fingerprint(model: nn.Module) -> str:
    """sha256 of a model's state_dict: names (without a ``module.`` prefix), dtypes, shapes
    and bytes. Surface and direction files record it so they are never mixed with other weights.
    """
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name.removeprefix('module.')}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
