"""DenseNet-BC for 3x32x32 (CIFAR) inputs (Huang et al. 2017), layout of the reference code.

Each dense layer is a bottleneck ``BN-ReLU-conv1x1(4g)-BN-ReLU-conv3x3(g)`` whose ``g`` new
feature maps are concatenated in front of its input; transitions between dense blocks
halve the channel count (compression 0.5) and the resolution.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import register_model


class DenseLayer(nn.Module):
    """Bottleneck dense layer: outputs ``cat([new_features, x])`` with ``growth_rate`` new maps.

    Args:
        in_planes: Input channels.
        growth_rate: Channels added by this layer.
    """

    def __init__(self, in_planes: int, growth_rate: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth_rate, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth_rate)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([out, x], dim=1)


class Transition(nn.Module):
    """``BN-ReLU-conv1x1`` to ``out_planes`` channels followed by a 2x2 average pool."""

    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(nn.Module):
    """Stem ``conv1``, blocks ``dense1..denseN`` with transitions ``trans1..trans{N-1}``, head.

    Args:
        num_layers: Dense layers per block.
        growth_rate: Channels added per dense layer (the stem outputs ``2 * growth_rate``).
        reduction: Channel compression of each transition.
        num_classes: Output size of the linear head.
    """

    def __init__(
        self,
        num_layers: Sequence[int],
        growth_rate: int = 32,
        reduction: float = 0.5,
        num_classes: int = 10,
    ):
        super().__init__()
        planes = 2 * growth_rate
        self.conv1 = nn.Conv2d(3, planes, kernel_size=3, padding=1, bias=False)
        self.num_blocks = len(num_layers)
        for i, n in enumerate(num_layers):
            layers = []
            for _ in range(n):
                layers.append(DenseLayer(planes, growth_rate))
                planes += growth_rate
            self.add_module(f"dense{i + 1}", nn.Sequential(*layers))
            if i < len(num_layers) - 1:
                out_planes = int(math.floor(planes * reduction))
                self.add_module(f"trans{i + 1}", Transition(planes, out_planes))
                planes = out_planes
        self.bn = nn.BatchNorm2d(planes)
        self.linear = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        for i in range(self.num_blocks):
            out = getattr(self, f"dense{i + 1}")(out)
            if i < self.num_blocks - 1:
                out = getattr(self, f"trans{i + 1}")(out)
        # The reference pools the final 4x4 map with a 4x4 window; a global average is the
        # same for 32x32 inputs and also works for other sizes.
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1).flatten(1)
        return self.linear(out)


@register_model
def densenet121(*, num_classes: int = 10) -> DenseNet:
    """DenseNet-121 (growth 32, blocks [6, 12, 24, 16], compression 0.5) for 32x32 inputs."""
    return DenseNet([6, 12, 24, 16], growth_rate=32, reduction=0.5, num_classes=num_classes)
