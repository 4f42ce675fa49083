"""Loss and accuracy of a network over evaluation data cached as tensors.

This is the per-grid-point work, so it is kept at the floor: the data already sits on the
device, normalized, cut into batch views; the net is in eval mode under inference mode;
losses are summed on the device and read back once per pass.
"""
from __future__ import annotations

import itertools
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._options import LOSSES
from .errors import ModelError, one_line

Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]


def make_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, *,
                 device: torch.device | str = "cpu",
                 channels_last: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Move the data to ``device`` once and cut it into batch views (no copies per batch).

    ``channels_last`` stores 4D inputs in NHWC order (for models prepared with the same flag).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x, y = x.to(device), y.to(device)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]


def resolve_channels_last(choice: bool | None, model: nn.Module, inputs: torch.Tensor) -> tuple[bool, str]:
    """Whether to evaluate in NHWC memory format, and why (for the start-up report).

    ``choice`` True/False is the user's. None (the default) turns it on for a model with 2D
    convolutions on 4D floating-point inputs, where it was measured faster on CPUs and GPUs
    alike, if the model's forward accepts NHWC inputs (a custom ``x.view(n, -1)`` does not):
    that is tried on two samples, and the model is left in the format chosen.
    """
    if choice is not None:
        return choice, "given"
    if inputs.dim() != 4 or not inputs.is_floating_point():
        return False, "inputs are not images"
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return False, "no 2D convolutions"
    model.to(memory_format=torch.channels_last)
    try:
        _quiet_forward(model, inputs[:2].to(_device_of(model, inputs.device)).contiguous(
            memory_format=torch.channels_last))
    except Exception as exc:
        model.to(memory_format=torch.contiguous_format)
        return False, f"the model's forward fails on NHWC inputs: {one_line(exc, 120)}"
    return True, "convolutional model"


def batches_to_channels_last(batches: Batches) -> Batches:
    """The same batches with 4D inputs stored NHWC (one copy of the inputs)."""
    return [(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x, y) for x, y in batches]


def prepare_model(model: nn.Module, *, channels_last: bool = False, compile: bool = False) -> nn.Module:
    """Speed options for evaluation; returns the module to call.

    ``channels_last`` converts the model's tensors to NHWC in place (do it before anything
    holds references to them); ``compile`` wraps the model with ``torch.compile``, which keeps
    reading the model's tensors, so weights set in place between calls are honoured.
    """
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return torch.compile(model) if compile else model


def loss_sum(outputs: torch.Tensor, targets: torch.Tensor, *, loss_name: str,
             num_classes: int, reduction: str = "sum") -> torch.Tensor:
    """Summed (not averaged) loss of one batch, as a 0-dim tensor on the device
    (``reduction="none"``: one value per sample).

    crossentropy: sum over samples of the cross-entropy of the logits.
    mse: sum over samples of mean over classes of (softmax(logits) - one_hot(target))^2,
    i.e. the reference's ``MSELoss()(softmax, one_hot) * batch_size``, with the number of
    classes taken from the data instead of a hard-coded 10.
    """
    if reduction not in ("sum", "none"):
        raise ValueError(f"reduction must be 'sum' or 'none', got {reduction!r}")
    if loss_name == "crossentropy":
        return F.cross_entropy(outputs, targets, reduction=reduction)
    if loss_name == "mse":
        one_hot = F.one_hot(targets, num_classes).to(outputs.dtype)
        per_sample = (F.softmax(outputs, dim=1) - one_hot).pow(2).mean(dim=1)
        return per_sample.sum() if reduction == "sum" else per_sample
    raise ValueError(f"loss_name must be one of {LOSSES}, got {loss_name!r}")


def evaluate(model: nn.Module, batches: Batches, *, loss_name: str = "crossentropy",
             num_classes: int = 10, poll: Callable[[], None] | None = None,
             bf16: bool = False) -> tuple[float, float]:
    """Mean loss per sample and accuracy in percent over ``batches``.

    Args:
        model: in eval mode (BatchNorm uses its running statistics, dropout is off).
        batches: ``(inputs, labels)`` pairs already on the model's device.
        poll: called between batches (MPI ranks use it to answer requests while computing).
        bf16: run the forward under bfloat16 autocast (the loss is summed in float32/64).

    Returns:
        ``(mean loss, 100 * correct / N)``, like the reference's ``eval_loss``.
    """
    if getattr(model, "training", False):
        raise ValueError("evaluate() needs the model in eval mode (call model.eval())")
    losses, accs = evaluate_many(lambda x: model(x).unsqueeze(0), batches, loss_name=loss_name,
                                 num_classes=num_classes, poll=poll, bf16=bf16)
    return losses[0], accs[0]


def evaluate_many(forward: Callable[[torch.Tensor], torch.Tensor], batches: Batches, *,
                  loss_name: str = "crossentropy", num_classes: int = 10,
                  poll: Callable[[], None] | None = None, bf16: bool = False) -> tuple[list[float], list[float]]:
    """Like :func:`evaluate` for K networks at once: ``forward(x)`` returns ``(K, B, C)``.

    Returns:
        K mean losses and K accuracies in percent.
    """
    device = batches[0][0].device
    total = correct = None
    count = 0
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for inputs, targets in batches:
            outputs = forward(inputs).float()  # (K, B, C)
            k, b, c = outputs.shape
            flat = outputs.reshape(k * b, c)
            per_sample = loss_sum(flat, targets.repeat(k), loss_name=loss_name,
                                  num_classes=num_classes, reduction="none").view(k, b)
            batch_loss = per_sample.double().sum(dim=1)
            batch_correct = (outputs.argmax(dim=2) == targets).sum(dim=1)
            total = batch_loss if total is None else total + batch_loss
            correct = batch_correct if correct is None else correct + batch_correct
            count += b
            if poll is not None:
                poll()
    return (total / count).tolist(), (100.0 * correct.double() / count).tolist()


def check_model_fits(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], *, num_classes: int,
                     loss_name: str = "crossentropy", name: str = "the model", data: str = "the data",
                     samples: int = 4) -> None:
    """Refuse a model whose output on the first few samples of ``batch`` the loss cannot use.

    The model runs once, in eval mode under ``torch.no_grad``, on ``samples`` inputs moved to
    its own device; its modes are put back after and torch's random number streams are left
    as they were, so the check changes nothing that comes after it. A NaN output is accepted
    (a NaN loss is a value of the landscape). ``name`` and ``data`` name the two in messages.

    Accepted: a floating-point tensor of logits of shape ``(n, C)``, one row per sample, with
    ``C == num_classes`` for ``mse`` and ``C >= num_classes`` for ``crossentropy`` (where
    ``num_classes`` may come from the largest label of the data).

    Raises:
        ModelError: the forward raised, or its output has the wrong type, dtype or shape; the
            message gives the input shape, what came out and what was expected.
    """
    inputs, targets = batch
    n = min(samples, len(inputs))
    device = _device_of(model, inputs.device)
    x, y = inputs[:n].to(device), targets[:n].to(device)
    given = f"on its first {n} input(s), of shape {_shape(x.shape)}"
    try:
        outputs = _quiet_forward(model, x)
    except Exception as exc:
        raise ModelError(f"{name} cannot run on {data}: {given}, its forward raised {one_line(exc)}; "
                         f"make the model accept inputs of this shape, or use data that fits it") from exc
    expected = (f"expected floating-point logits of shape ({n}, {num_classes}), one row per sample "
                f"and one column per class ({num_classes} classes)")
    problem = _output_problem(outputs, n, num_classes, loss_name)
    if problem is None:
        try:
            loss_sum(outputs.float(), y, loss_name=loss_name, num_classes=num_classes)
        except Exception as exc:
            problem = (f"{_describe_output(outputs)}, on which --loss_name {loss_name} raised {one_line(exc)}",
                       "check the labels of the data")
    if problem is not None:
        what, fix = problem
        raise ModelError(f"{name} does not fit {data}: {given}, it returned {what}; {expected}; {fix}")


def _output_problem(outputs: object, n: int, num_classes: int, loss_name: str) -> tuple[str, str] | None:
    """What is wrong with a model's output for ``n`` samples and how to fix it, or None if the
    loss can use it."""
    what = _describe_output(outputs)
    if not isinstance(outputs, torch.Tensor):
        return what, "make the model's forward return the logits tensor alone"
    if not outputs.is_floating_point():
        return what, "return the scores of the classes, not class indices"
    if outputs.dim() != 2 or outputs.shape[0] != n:
        return what, "keep one row per sample (e.g. x.flatten(1), not x.view(-1, k))"
    width = outputs.shape[1]
    if width < num_classes or (loss_name == "mse" and width != num_classes):
        return what, f"give the model a head with {num_classes} outputs"
    return None


def _describe_output(outputs: object) -> str:
    """A model's output in a few words: a tensor's dtype and shape, or a container's type and length."""
    if isinstance(outputs, torch.Tensor):
        return f"a tensor of shape {_shape(outputs.shape)} ({str(outputs.dtype).removeprefix('torch.')})"
    if isinstance(outputs, (tuple, list, dict)):
        return f"a {type(outputs).__name__} of {len(outputs)} item(s)"
    return f"a {type(outputs).__name__}"


def _shape(shape: Sequence[int]) -> str:
    dims = [str(int(d)) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _device_of(model: nn.Module, default: torch.device) -> torch.device:
    """The device of the model's first parameter (or buffer), else ``default``."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return default if tensor is None else tensor.device


def _quiet_forward(model: nn.Module, x: torch.Tensor) -> object:
    """``model(x)`` in eval mode without gradients, leaving the modes of its modules and torch's
    random number streams as they were."""
    modes = [(module, module.training) for module in model.modules()]
    cuda = []
    if x.device.type == "cuda":
        cuda = [torch.cuda.current_device() if x.device.index is None else x.device.index]
    try:
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            model.eval()
            return model(x)
    finally:
        for module, training in modes:
            module.training = training
