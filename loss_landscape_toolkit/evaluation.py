"""Loss and accuracy of a network over evaluation data cached as tensors.

This is the per-grid-point work, so it is kept at the floor: the data already sits on the
device, normalized, cut into batch views; the net is in eval mode under inference mode;
losses are summed on the device and read back once per pass.
"""
from __future__ import annotations

import itertools
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from .errors import ModelError, one_line
from .objective import (
    Inputs,
    Loss,
    LossError,
    call_model,
    describe_output,
    forward,
    get_loss,
    logits_of,
    shape_text,
)

Batches = Sequence[tuple[Inputs, torch.Tensor]]


def make_batches(x: Inputs, y: torch.Tensor, batch_size: int, *, device: torch.device | str = "cpu",
                 channels_last: bool = False) -> list[tuple[Inputs, torch.Tensor]]:
    """Move the data to ``device`` once and cut it into batch views (no copies per batch).

    ``x`` is a tensor or a dict of tensors (keyword arguments of the model), all with the
    items along the first dimension. ``channels_last`` stores 4D inputs in NHWC order (for
    models prepared with the same flag).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x, y = map_inputs(lambda t: t.to(device), x), y.to(device)
    if channels_last:
        x = inputs_to_channels_last(x)
    return [(map_inputs(lambda t, i=i: t[i:i + batch_size], x), y[i:i + batch_size])
            for i in range(0, len(y), batch_size)]


def map_inputs(fn: Callable[[torch.Tensor], torch.Tensor], x: Inputs) -> Inputs:
    """``fn`` applied to the input tensor, or to each tensor of a dict of inputs."""
    if isinstance(x, Mapping):
        return {key: fn(value) for key, value in x.items()}
    return fn(x)


def first_tensor(x: Inputs) -> torch.Tensor:
    """The input tensor, or the first tensor of a dict of inputs."""
    return next(iter(x.values())) if isinstance(x, Mapping) else x


def inputs_to_channels_last(x: Inputs) -> Inputs:
    """4D image inputs stored NHWC (others unchanged)."""
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def resolve_channels_last(choice: bool | None, model: nn.Module, inputs: Inputs) -> tuple[bool, str]:
    """Whether to evaluate in NHWC memory format, and why (for the start-up report).

    ``choice`` True/False is the user's. None (the default) turns it on for a model with 2D
    convolutions on 4D floating-point inputs, where it was measured faster on CPUs and GPUs
    alike, if the model's forward accepts NHWC inputs (a custom ``x.view(n, -1)`` does not):
    that is tried on two samples, and the model is left in the format chosen.
    """
    if choice is not None:
        return choice, "given"
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4 or not inputs.is_floating_point():
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
    return [(inputs_to_channels_last(x), y) for x, y in batches]


def prepare_model(model: nn.Module, *, channels_last: bool = False, compile: bool = False) -> nn.Module:
    """Speed options for evaluation; returns the module to call.

    ``channels_last`` converts the model's tensors to NHWC in place (do it before anything
    holds references to them); ``compile`` wraps the model with ``torch.compile``, which keeps
    reading the model's tensors, so weights set in place between calls are honoured.
    """
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return torch.compile(model) if compile else model


def evaluate(model: nn.Module, batches: Iterable[tuple[Inputs, torch.Tensor]], *,
             loss_name: str | Loss = "crossentropy", num_classes: int = 0, poll: Callable[[], None] | None = None,
             bf16: bool = False) -> tuple[float, float | None]:
    """Mean loss and accuracy in percent over ``batches`` (see :mod:`objective` for the losses).

    Args:
        model: in eval mode (BatchNorm uses its running statistics, dropout is off).
        batches: ``(inputs, targets)`` pairs already on the model's device.
        loss_name: a built-in loss name, a user loss spec, or a :class:`objective.Loss`.
        num_classes: classes of ``softmax_mse`` (default: the outputs' width).
        poll: called between batches (MPI ranks use it to answer requests while computing).
        bf16: run the forward under bfloat16 autocast (the loss is summed in float32/64).

    Returns:
        ``(mean loss, 100 * correct / counted)``, like the reference's ``eval_loss``; the
        accuracy is None for losses without one (regression, user losses).
    """
    if getattr(model, "training", False):
        raise ValueError("evaluate() needs the model in eval mode (call model.eval())")
    losses, accs = evaluate_many(lambda x: forward(model, x).unsqueeze(0), batches, loss_name=loss_name,
                                 num_classes=num_classes, poll=poll, bf16=bf16)
    return losses[0], None if accs is None else accs[0]


def evaluate_many(stacked_forward: Callable[[Inputs], torch.Tensor],
                  batches: Iterable[tuple[Inputs, torch.Tensor]], *,
                  loss_name: str | Loss = "crossentropy", num_classes: int = 0,
                  poll: Callable[[], None] | None = None,
                  bf16: bool = False) -> tuple[list[float], list[float] | None]:
    """Like :func:`evaluate` for K networks at once: ``stacked_forward(x)`` returns the K output
    tensors stacked, ``(K, B, ...)``.

    Returns:
        K mean losses and K accuracies in percent (None for losses without accuracy). Sums and
        counts stay on the device and are read back once.
    """
    loss = get_loss(loss_name)
    total = count = correct = None
    with torch.inference_mode():
        for inputs, targets in batches:
            with torch.autocast(first_tensor(inputs).device.type, dtype=torch.bfloat16, enabled=bf16):
                outputs = stacked_forward(inputs)
            sums = [loss.sums(out, targets, num_classes=num_classes) for out in outputs.float()]
            batch_loss = torch.stack([s.loss for s in sums])
            batch_count = torch.stack([s.count for s in sums])
            total = batch_loss if total is None else total + batch_loss
            count = batch_count if count is None else count + batch_count
            if sums[0].correct is not None:
                batch_correct = torch.stack([s.correct for s in sums])
                correct = batch_correct if correct is None else correct + batch_correct
            if poll is not None:
                poll()
    if total is None:
        raise ValueError("no batches to evaluate")
    count = count.double()
    accs = None if correct is None else (100.0 * correct.double() / count).tolist()
    return (total / count).tolist(), accs


def check_model_fits(model: nn.Module, batch: tuple[Inputs, torch.Tensor], *, num_classes: int,
                     loss_name: str | Loss = "crossentropy", name: str = "the model", data: str = "the data",
                     samples: int = 4, targets: torch.Tensor | None = None) -> None:
    """Refuse a model whose output on the first few samples of ``batch`` the loss cannot use.

    The model runs once, in eval mode under ``torch.no_grad``, on ``samples`` inputs moved to
    its own device; its modes are put back after and torch's random number streams are left
    as they were, so the check changes nothing that comes after it. A NaN output is accepted
    (a NaN loss is a value of the landscape). ``name`` and ``data`` name the two in messages.

    Accepted: what :func:`objective.logits_of` finds in the output, a floating-point tensor with
    one row per sample, that the loss takes with the batch's targets: for class labels ``(n,)``
    logits ``(n, C)`` with ``C == num_classes`` for ``softmax_mse`` (the reference's ``mse``)
    and ``C >= num_classes`` for ``crossentropy``; for targets ``(n, ...)`` logits
    ``(n, ..., C)``; for real-valued targets under ``mse`` one output per target value.
    ``targets`` (default: the batch's) are checked to be class indices the outputs can score.

    Raises:
        ModelError: the forward raised, or its output has the wrong type, dtype or shape; the
            message gives the input shape, what came out and what was expected.
    """
    loss = get_loss(loss_name)
    inputs, batch_targets = batch
    n = min(samples, len(batch_targets))
    device = _device_of(model, first_tensor(inputs).device)
    x, y = map_inputs(lambda t: t[:n].to(device), inputs), batch_targets[:n].to(device)
    given = f"on its first {n} input(s), {describe_inputs(x)}"
    try:
        raw = _quiet_forward(model, x)
    except Exception as exc:
        raise ModelError(f"{name} cannot run on {data}: {given}, its forward raised {one_line(exc)}; "
                         f"make the model accept inputs of this shape, or use data that fits it") from exc
    problem = _output_problem(raw, y, num_classes, loss)
    if problem is None:
        outputs = logits_of(raw).float()
        try:
            loss.sums(outputs, y, num_classes=num_classes)
            loss.check_targets(batch_targets if targets is None else targets, outputs.shape[-1])
        except LossError as exc:
            problem = (describe_output(outputs), str(exc))
    if problem is not None:
        what, fix = problem
        raise ModelError(f"{name} does not fit {data}: {given}, it returned {what}; "
                         f"{_expected_output(loss, y, num_classes)}; {fix}")


def describe_inputs(x: Inputs) -> str:
    """``of shape (4, 3, 32, 32)``; for a dict, each keyword's shape and dtype."""
    if isinstance(x, Mapping):
        return "keywords " + ", ".join(f"{key} {shape_text(t.shape)} {str(t.dtype).removeprefix('torch.')}"
                                       for key, t in x.items())
    return f"of shape {shape_text(x.shape)}"


def _expected_output(loss: Loss, y: torch.Tensor, num_classes: int) -> str:
    """What the loss takes, in words, for targets like ``y`` (whose shape it names)."""
    targets = f"targets of shape {shape_text(y.shape)}"
    if loss.fn is not None:
        return f"expected an output that --loss {loss.name} takes with {targets}"
    if y.is_floating_point():
        return f"expected one output per target value ({targets})"
    if y.dim() == 1:
        return (f"expected floating-point logits of shape ({len(y)}, {num_classes}) for {targets}, one row "
                f"per sample and one column per class ({num_classes} classes)")
    return (f"expected floating-point logits of shape {shape_text(y.shape)[:-1]}, C) for {targets}, one "
            f"score per class at each target position")


def _output_problem(outputs: object, y: torch.Tensor, num_classes: int, loss: Loss) -> tuple[str, str] | None:
    """What is wrong with a model's output for the targets ``y`` and how to fix it, or None if the
    loss may use it (the loss itself then checks the shapes)."""
    what = describe_output(outputs)
    try:
        tensor = logits_of(outputs)
    except LossError:
        return what, "make the model's forward return the output tensor (or a dict or object with 'logits')"
    if tensor is not outputs:
        what = f"{what} holding {describe_output(tensor)}"
    rows = "keep one row per sample (e.g. x.flatten(1), not x.view(-1, k))"
    if not tensor.is_floating_point():
        return what, "return the scores of the classes, not class indices"
    if tensor.dim() == 0 or tensor.shape[0] != len(y):
        return what, rows
    if loss.fn is None and not y.is_floating_point() and y.dim() == 1:  # class labels
        if tensor.dim() != 2:
            return what, rows
        width = tensor.shape[1]
        if width < num_classes or (loss.name != "crossentropy" and width != num_classes):
            return what, f"give the model a head with {num_classes} outputs"
    return None


def _device_of(model: nn.Module, default: torch.device) -> torch.device:
    """The device of the model's first parameter (or buffer), else ``default``."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return default if tensor is None else tensor.device


def _quiet_forward(model: nn.Module, x: Inputs) -> object:
    """The model's raw output on ``x`` (:func:`objective.call_model`) in eval mode without
    gradients, leaving the modes of its modules and torch's random number streams as they were."""
    modes = [(module, module.training) for module in model.modules()]
    device = first_tensor(x).device
    cuda = []
    if device.type == "cuda":
        cuda = [torch.cuda.current_device() if device.index is None else device.index]
    try:
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            model.eval()
            return call_model(model, x)
    finally:
        for module, training in modes:
            module.training = training
