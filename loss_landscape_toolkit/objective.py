"""What a grid point measures: how a model is called on a batch, and the loss aggregated exactly.

Any PyTorch model and data fit this contract:

* **inputs** are a tensor of any dtype (images, token ids, features) called as ``model(x)``,
  or a dict of tensors called as ``model(**inputs)`` (HF-style ``input_ids``, ``attention_mask``);
* **outputs** are a tensor, a tuple or list (its first element), a dict with ``"logits"`` or an
  object with a ``.logits`` attribute (see :func:`logits_of`);
* **losses** (:class:`Loss`) are sums and counts, so a surface point is the exact mean over the
  whole dataset, never a mean of batch means:

  - ``crossentropy``: outputs ``(N, C)`` or ``(N, ..., C)`` (e.g. ``(B, T, V)`` logits of a
    language model) with integer targets ``(N, ...)`` aligned with the output positions; targets
    equal to -100 (PyTorch's ``ignore_index``) are skipped. The mean over all counted positions,
    and the accuracy over the same positions (token accuracy for a language model).
  - ``mse``: on real-valued targets, the mean squared error over all target elements
    (regression; no accuracy). On integer class labels it keeps the reference code's meaning,
    ``softmax_mse``.
  - ``softmax_mse``: the reference's ``MSELoss(softmax(outputs), one_hot(targets))``: per
    sample the mean over classes of the squared difference; with accuracy.
  - a user's loss (``path/file.py:fn``, ``pkg.module:fn`` or a callable): ``fn(outputs, targets)``
    with the unwrapped output tensor and the targets of one batch returns either a tensor of
    per-item losses (any shape; all are summed and counted) or a pair ``(loss_sum, count)``
    (summed over batches). The value is total sum / total count; no accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from ._imports import import_object, is_spec, on_sys_path
from ._options import LOSSES as BUILTIN_LOSSES
from .errors import UsageError, one_line

Inputs = torch.Tensor | Mapping[str, torch.Tensor]

IGNORE_INDEX = -100  # targets skipped by crossentropy, as torch's default ignore_index
LOSS_SIGNATURE = ("fn(outputs, targets) -> per-item losses (a tensor, summed and counted) "
                  "or a pair (loss_sum, count)")


class LossError(UsageError):
    """A loss that cannot be used: an unknown name, a user loss that fails or returns the wrong
    thing, or outputs and targets whose shapes do not fit the loss."""


# --------------------------------------------------------------------------- model calls
def call_model(model: Callable[..., Any], inputs: Inputs) -> Any:
    """``model(**inputs)`` for a dict of tensors, else ``model(inputs)``."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    return model(inputs)


def logits_of(outputs: Any) -> torch.Tensor:
    """The tensor inside a model's output: the output itself, the first element of a tuple or
    list, ``outputs["logits"]`` of a dict, or ``outputs.logits``.

    Raises:
        LossError: nothing of these holds a tensor.
    """
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, Mapping):
        found = outputs.get("logits")
    elif isinstance(outputs, (tuple, list)):
        found = outputs[0] if outputs else None
    else:
        found = getattr(outputs, "logits", None)
    if not isinstance(found, torch.Tensor):
        raise LossError(f"the model returned {describe_output(outputs)}; expected a tensor, a tuple or "
                        f"list whose first element is the tensor, a dict with 'logits', or an object "
                        f"with a .logits tensor")
    return found


def forward(model: Callable[..., Any], inputs: Inputs) -> torch.Tensor:
    """The model's output tensor on ``inputs`` (:func:`call_model`, then :func:`logits_of`)."""
    return logits_of(call_model(model, inputs))


def describe_output(outputs: object) -> str:
    """A model's output in a few words: a tensor's dtype and shape, or a container's type and size."""
    if isinstance(outputs, torch.Tensor):
        return f"a tensor of shape {shape_text(outputs.shape)} ({str(outputs.dtype).removeprefix('torch.')})"
    if isinstance(outputs, Mapping):
        return f"a {type(outputs).__name__} with keys {sorted(map(str, outputs))[:6]}"
    if isinstance(outputs, (tuple, list)):
        return f"a {type(outputs).__name__} of {len(outputs)} item(s)"
    return f"a {type(outputs).__name__}"


def shape_text(shape: Any) -> str:
    """``(4, 10)``; ``(4,)`` for one dimension."""
    dims = [str(int(d)) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


# --------------------------------------------------------------------------- losses
@dataclass(frozen=True)
class BatchSums:
    """One batch's contribution: summed loss (float64, 0-dim), number of counted items, and the
    number of correct predictions among them (None for losses without accuracy)."""

    loss: torch.Tensor
    count: torch.Tensor
    correct: torch.Tensor | None


@dataclass(frozen=True)
class Loss:
    """A loss aggregated exactly over a dataset (see the module's docstring).

    Attributes:
        name: a built-in name, or the user's spec (what surface files record as ``loss_name``).
        fn: the user's loss function, None for the built-in losses.
    """

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], Any] | None = None

    def has_accuracy(self, targets: torch.Tensor) -> bool:
        """Whether this loss reports an accuracy on targets like ``targets`` (class labels)."""
        if self.fn is not None:
            return False
        return self.name != "mse" or not targets.is_floating_point()

    def check_targets(self, targets: torch.Tensor, width: int) -> None:
        """Refuse class targets outside ``0..width-1`` for a model with ``width`` outputs per
        position (``crossentropy`` also allows -100, skipped). Called once on a whole split: the
        per-batch :meth:`sums` checks shapes only, so nothing waits for the device per batch.

        Raises:
            LossError: naming the values found.
        """
        if self.fn is not None or targets.is_floating_point() or targets.numel() == 0:
            return
        labels = targets[targets != IGNORE_INDEX] if self.name == "crossentropy" else targets
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= width):
            skip = f" (or {IGNORE_INDEX} to skip a position)" if self.name == "crossentropy" else ""
            raise LossError(f"{self.name} targets must be class indices 0..{width - 1}{skip} for a model "
                            f"with {width} outputs, got values {int(labels.min())}..{int(labels.max())}")

    def sums(self, outputs: torch.Tensor, targets: torch.Tensor, *, num_classes: int = 0) -> BatchSums:
        """Summed loss, count and correct predictions of one batch, on the outputs' device.

        Args:
            outputs: the model's output tensor for the batch (float).
            targets: the batch's targets.
            num_classes: classes of ``softmax_mse`` (default: the outputs' last dimension).

        Raises:
            LossError: shapes or dtypes that do not fit the loss, or a user loss that fails.
        """
        if self.fn is not None:
            return _user_sums(self, outputs, targets)
        if self.name == "crossentropy":
            return _crossentropy_sums(outputs, targets)
        if self.name == "mse" and targets.is_floating_point():
            return _regression_sums(outputs, targets)
        return _softmax_mse_sums(outputs, targets, num_classes or outputs.shape[-1])


def get_loss(loss: str | Loss | Callable[[torch.Tensor, torch.Tensor], Any]) -> Loss:
    """A :class:`Loss` from a built-in name, a ``path/file.py:fn`` / ``pkg.module:fn`` spec, a
    callable, or a Loss (returned as is).

    Raises:
        LossError: an unknown name, or a spec that cannot be imported.
    """
    if isinstance(loss, Loss):
        return loss
    if callable(loss):
        return Loss(getattr(loss, "__qualname__", type(loss).__name__), loss)
    if isinstance(loss, str) and loss in BUILTIN_LOSSES:
        return Loss(loss)
    if isinstance(loss, str) and is_spec(loss):
        fn, folder = import_object(loss, kind="loss", error=LossError)

        def in_folder(outputs: torch.Tensor, targets: torch.Tensor) -> Any:
            with on_sys_path(folder):
                return fn(outputs, targets)

        return Loss(loss, in_folder)
    raise LossError(f"unknown loss {loss!r}; expected one of {', '.join(BUILTIN_LOSSES)}, or your own "
                    f"as 'path/to/file.py:fn' or 'pkg.module:fn' with {LOSS_SIGNATURE}")


def _shapes(outputs: torch.Tensor, targets: torch.Tensor) -> str:
    return f"outputs of shape {shape_text(outputs.shape)} and targets of shape {shape_text(targets.shape)}"


def _crossentropy_sums(outputs: torch.Tensor, targets: torch.Tensor) -> BatchSums:
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise LossError(f"crossentropy needs integer class targets, got {targets.dtype} targets with "
                        f"{_shapes(outputs, targets)}; for real-valued targets use --loss_name mse")
    if not outputs.is_floating_point() or outputs.dim() < 2 or outputs.shape[:-1] != targets.shape:
        raise LossError(f"crossentropy needs float outputs (N, C) or (N, ..., C) with integer targets "
                        f"(N) or (N, ...) of the same leading shape, got {_shapes(outputs, targets)}")
    flat, labels = outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1)
    counted = labels != IGNORE_INDEX
    per_item = F.cross_entropy(flat, labels, reduction="none", ignore_index=IGNORE_INDEX)
    correct = ((flat.argmax(dim=1) == labels) & counted).sum()
    return BatchSums(per_item.double().sum(), counted.sum(), correct)


def _softmax_mse_sums(outputs: torch.Tensor, targets: torch.Tensor, num_classes: int) -> BatchSums:
    if outputs.dim() != 2 or targets.dim() != 1 or targets.is_floating_point() or len(targets) != len(outputs):
        raise LossError(f"softmax_mse (the reference's mse) needs outputs (N, C) and integer class "
                        f"labels (N), got {_shapes(outputs, targets)}")
    if outputs.shape[1] != num_classes:
        raise LossError(f"softmax_mse needs one output per class ({num_classes} classes), got "
                        f"{_shapes(outputs, targets)}")
    one_hot = F.one_hot(targets, num_classes).to(outputs.dtype)
    per_sample = (F.softmax(outputs, dim=1) - one_hot).pow(2).mean(dim=1)
    correct = (outputs.argmax(dim=1) == targets).sum()
    return BatchSums(per_sample.double().sum(), targets.new_tensor(len(targets)), correct)


def _regression_sums(outputs: torch.Tensor, targets: torch.Tensor) -> BatchSums:
    if outputs.shape != targets.shape:
        if outputs.numel() != targets.numel() or outputs.shape[:1] != targets.shape[:1]:
            raise LossError(f"mse needs one output per target value, got {_shapes(outputs, targets)}")
        targets = targets.reshape(outputs.shape)  # (N,) targets for (N, 1) outputs
    squared = (outputs.double() - targets.double()).pow(2)
    return BatchSums(squared.sum(), targets.new_tensor(targets.numel(), dtype=torch.int64), None)


def _user_sums(loss: Loss, outputs: torch.Tensor, targets: torch.Tensor) -> BatchSums:
    try:
        result = loss.fn(outputs, targets)
    except Exception as exc:
        raise LossError(f"--loss {loss.name} raised {one_line(exc)} on {_shapes(outputs, targets)}") from exc
    if isinstance(result, (tuple, list)) and len(result) == 2:
        total, count = (torch.as_tensor(v, device=outputs.device) for v in result)
        if total.numel() == 1 and count.numel() == 1:
            return BatchSums(total.double().reshape(()), count.reshape(()), None)
    elif isinstance(result, torch.Tensor) and result.dim() > 0 and result.is_floating_point():
        return BatchSums(result.double().sum(), result.new_tensor(result.numel(), dtype=torch.int64), None)
    got = describe_output(result) if isinstance(result, (torch.Tensor, tuple, list)) else type(result).__name__
    hint = " (a single number: a batch mean cannot be aggregated exactly)" if (
        isinstance(result, torch.Tensor) and result.dim() == 0) else ""
    raise LossError(f"--loss {loss.name} returned {got}{hint}; expected {LOSS_SIGNATURE}")

