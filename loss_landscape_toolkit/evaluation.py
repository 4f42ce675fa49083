"""Loss and accuracy of a network over evaluation data cached as tensors.

This is the per-grid-point work, so it is kept at the floor: the data already sits on the
device, normalized, cut into batch views; the net is in eval mode under inference mode;
losses are summed on the device and read back once per pass.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._options import LOSSES

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
