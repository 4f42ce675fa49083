"""BatchNorm folded into the convolution before it, for evaluation: one pass less per layer.

In eval mode a ``BatchNorm2d`` after a ``Conv2d`` is an affine map per channel, so the pair is
one convolution with weights ``W * s`` and bias ``(b - mean) * s + beta``, where
``s = gamma / sqrt(var + eps)``. A grid moves the weights (and, for ``states`` directions, the
statistics) at every point, so the folded weights cannot be computed once: :class:`FoldedModel`
is an evaluation copy of the model that shares every other module with it and recomputes the
folded weights from the model's current tensors in :meth:`FoldedModel.refresh`, a few
element-wise operations on the weights, before each point. The model itself is never changed.

Pairs are found on the ``torch.fx`` graph: a ``Conv2d`` call whose only user is a
``BatchNorm2d`` call with running statistics. A model fx cannot trace is evaluated as it is.
The graph runs the forward's tensor operations only: Python side effects or branches on
anything but the model's structure are traced once and frozen. That is exact for the zoo's
models, so :func:`foldable_by_default` turns folding on for them alone; other models are folded
when asked.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx, nn

from .errors import one_line


@dataclass(frozen=True)
class _Pair:
    conv: nn.Conv2d  # the model's own modules, read at every refresh
    bn: nn.BatchNorm2d
    folded: nn.Conv2d  # the copy's convolution, written at every refresh


class FoldedModel:
    """An evaluation copy of ``model`` with its Conv2d-BatchNorm2d pairs folded.

    Attributes:
        module: the copy to call (eval mode); every module outside the pairs is the model's own.
        pairs: number of pairs folded.
    """

    def __init__(self, module: fx.GraphModule, pairs: list[_Pair]):
        self.module = module
        self._pairs = pairs
        self.pairs = len(pairs)
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        """Recompute the folded weights from the model's current weights and statistics."""
        for pair in self._pairs:
            conv, bn, folded = pair.conv, pair.bn, pair.folded
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight
            folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            shift = -bn.running_mean if conv.bias is None else conv.bias - bn.running_mean
            bias = shift * scale
            folded.bias.copy_(bias if bn.bias is None else bias + bn.bias)


TRUSTED_MODULES = ("torch.nn.", "loss_landscape_toolkit.models.")  # forwards that fx traces exactly


def foldable_by_default(model: nn.Module) -> bool:
    """Whether every module of ``model`` is torch's or the zoo's (whose forwards have no Python
    side effects or data-dependent branches), so folding is exact and on by default."""
    return all(type(m).__module__.startswith(TRUSTED_MODULES) for m in model.modules())


def fold_batchnorm(model: nn.Module) -> tuple[FoldedModel | None, str]:
    """The folded evaluation copy of ``model`` and a few words on it, or None and why not.

    Call ``refresh()`` on the result whenever the model's weights or statistics changed.
    """
    if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return None, "no BatchNorm2d"
    try:
        traced = fx.symbolic_trace(model)
    except Exception as exc:
        return None, f"the model cannot be traced by torch.fx: {one_line(exc, 100)}"
    modules = dict(traced.named_modules())
    pairs: list[_Pair] = []
    graph = traced.graph
    for node in list(graph.nodes):
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, nn.BatchNorm2d) or bn.running_mean is None or len(node.args) != 1:
            continue
        source = node.args[0]
        conv = modules.get(source.target) if isinstance(source, fx.Node) and source.op == "call_module" else None
        if not isinstance(conv, nn.Conv2d) or len(source.users) != 1 or conv.padding_mode != "zeros":
            continue
        folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                           padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                           device=conv.weight.device, dtype=conv.weight.dtype)
        folded.weight.data = torch.empty_like(conv.weight)  # the model's memory format
        _set_submodule(traced, source.target, folded)
        node.replace_all_uses_with(source)
        graph.erase_node(node)
        pairs.append(_Pair(conv, bn, folded.requires_grad_(False)))
    if not pairs:
        return None, "no convolution followed by its BatchNorm2d"
    graph.lint()
    traced.delete_all_unused_submodules()  # the folded BatchNorms
    traced.recompile()
    traced.eval()
    return FoldedModel(traced, pairs), f"{len(pairs)} conv-BatchNorm pairs"


def _set_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    """Replace the submodule at dotted path ``target`` of ``root`` (in root's own hierarchy)."""
    parent, _, name = target.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)
