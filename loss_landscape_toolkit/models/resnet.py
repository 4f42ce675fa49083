"""Residual networks for 3x32x32 (CIFAR) inputs, with and without skip connections.

Three families share the same building blocks:

* CIFAR ResNets (He et al. 2016, section 4.2): a 16-channel 3x3 stem and three stages of
  ``n = (depth - 2) // 6`` basic blocks with 16/32/64 channels (``resnet20`` ... ``resnet110``).
* Wide ResNets ``wrn{depth}_{k}``: the same layout with every width, stem included,
  multiplied by ``k``.
* ImageNet-style ResNet-18/34/50/101/152 adapted to CIFAR: a stride-1 3x3 stem with 64
  channels and no max-pool, then four stages with 64/128/256/512 planes.

The ``_noshort`` variants drop the skip connections entirely (no ``shortcut`` module and no
addition), as studied in Li et al., "Visualizing the Loss Landscape of Neural Nets" (2018).
Module names and registration order match the reference implementation so its published
checkpoints load unchanged.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import register_model


def _projection(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """1x1 convolution + batch norm that matches the residual branch's shape."""
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, plus an optional skip connection.

    Args:
        in_planes: Input channels.
        planes: Output channels.
        stride: Stride of the first convolution (and of the projection shortcut).
        shortcut: Add a skip connection; ``False`` builds the plain (``_noshort``) block.
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.has_shortcut = shortcut
        if shortcut and (stride != 1 or in_planes != planes):
            self.shortcut = _projection(in_planes, planes, stride)
        else:
            self.shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.has_shortcut:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        return F.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) convolutions with batch norm, plus an optional skip.

    Args:
        in_planes: Input channels.
        planes: Width of the inner 3x3 convolution; the block outputs ``4 * planes`` channels.
        stride: Stride of the 3x3 convolution (and of the projection shortcut).
        shortcut: Add a skip connection; ``False`` builds the plain (``_noshort``) block.
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: bool = True):
        super().__init__()
        out_planes = self.expansion * planes
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.has_shortcut = shortcut
        if shortcut and (stride != 1 or in_planes != out_planes):
            self.shortcut = _projection(in_planes, out_planes, stride)
        else:
            self.shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.has_shortcut:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        return F.relu(out)


class ResNet(nn.Module):
    """A 3x3 stem, stages ``layer1..layerN`` of residual blocks, global average pool, linear head.

    The first stage keeps the resolution, every later stage halves it (stride 2).

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        num_blocks: Blocks per stage.
        widths: ``planes`` of each stage (block output is ``planes * block.expansion``).
        stem_width: Output channels of the stem convolution.
        num_classes: Output size of the linear head.
        shortcut: Build blocks with skip connections (``False`` for ``_noshort`` models).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: Sequence[int],
        widths: Sequence[int],
        stem_width: int,
        num_classes: int = 10,
        shortcut: bool = True,
    ):
        super().__init__()
        if len(num_blocks) != len(widths):
            raise ValueError(f"{len(num_blocks)} stage depths but {len(widths)} stage widths")
        self.conv1 = nn.Conv2d(3, stem_width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        in_planes = stem_width
        self.num_stages = len(widths)
        for i, (n, planes) in enumerate(zip(num_blocks, widths)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                blocks.append(block(in_planes, planes, stride if j == 0 else 1, shortcut))
                in_planes = planes * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        for i in range(self.num_stages):
            out = getattr(self, f"layer{i + 1}")(out)
        # The reference pools with a fixed window equal to the final map (8x8 or 4x4 for
        # 32x32 inputs); a global average is the same there and also works for other sizes.
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def _cifar_resnet(depth: int, width: int = 1, *, num_classes: int, shortcut: bool) -> ResNet:
    if (depth - 2) % 6 != 0:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
    n = (depth - 2) // 6
    return ResNet(
        BasicBlock,
        [n, n, n],
        [16 * width, 32 * width, 64 * width],
        stem_width=16 * width,
        num_classes=num_classes,
        shortcut=shortcut,
    )


_IMAGENET_LAYOUTS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


def _imagenet_resnet(depth: int, *, num_classes: int, shortcut: bool) -> ResNet:
    block, num_blocks = _IMAGENET_LAYOUTS[depth]
    return ResNet(block, num_blocks, [64, 128, 256, 512], stem_width=64, num_classes=num_classes, shortcut=shortcut)


# --- ImageNet-style ResNets adapted to CIFAR -------------------------------------------------


@register_model
def resnet18(*, num_classes: int = 10) -> ResNet:
    """ResNet-18 (basic blocks [2, 2, 2, 2]) for 32x32 inputs."""
    return _imagenet_resnet(18, num_classes=num_classes, shortcut=True)


@register_model
def resnet18_noshort(*, num_classes: int = 10) -> ResNet:
    """ResNet-18 without skip connections."""
    return _imagenet_resnet(18, num_classes=num_classes, shortcut=False)


@register_model
def resnet34(*, num_classes: int = 10) -> ResNet:
    """ResNet-34 (basic blocks [3, 4, 6, 3]) for 32x32 inputs."""
    return _imagenet_resnet(34, num_classes=num_classes, shortcut=True)


@register_model
def resnet34_noshort(*, num_classes: int = 10) -> ResNet:
    """ResNet-34 without skip connections."""
    return _imagenet_resnet(34, num_classes=num_classes, shortcut=False)


@register_model
def resnet50(*, num_classes: int = 10) -> ResNet:
    """ResNet-50 (bottlenecks [3, 4, 6, 3]) for 32x32 inputs."""
    return _imagenet_resnet(50, num_classes=num_classes, shortcut=True)


@register_model
def resnet50_noshort(*, num_classes: int = 10) -> ResNet:
    """ResNet-50 without skip connections."""
    return _imagenet_resnet(50, num_classes=num_classes, shortcut=False)


@register_model
def resnet101(*, num_classes: int = 10) -> ResNet:
    """ResNet-101 (bottlenecks [3, 4, 23, 3]) for 32x32 inputs."""
    return _imagenet_resnet(101, num_classes=num_classes, shortcut=True)


@register_model
def resnet101_noshort(*, num_classes: int = 10) -> ResNet:
    """ResNet-101 without skip connections."""
    return _imagenet_resnet(101, num_classes=num_classes, shortcut=False)


@register_model
def resnet152(*, num_classes: int = 10) -> ResNet:
    """ResNet-152 (bottlenecks [3, 8, 36, 3]) for 32x32 inputs."""
    return _imagenet_resnet(152, num_classes=num_classes, shortcut=True)


@register_model
def resnet152_noshort(*, num_classes: int = 10) -> ResNet:
    """ResNet-152 without skip connections."""
    return _imagenet_resnet(152, num_classes=num_classes, shortcut=False)


# --- CIFAR ResNets (16/32/64 channels) -------------------------------------------------------


@register_model
def resnet20(*, num_classes: int = 10) -> ResNet:
    """CIFAR ResNet-20 (3 basic blocks per stage)."""
    return _cifar_resnet(20, num_classes=num_classes, shortcut=True)


@register_model
def resnet20_noshort(*, num_classes: int = 10) -> ResNet:
    """CIFAR ResNet-20 without skip connections."""
    return _cifar_resnet(20, num_classes=num_classes, shortcut=False)


@register_model
def resnet32_noshort(*, num_classes: int = 10) -> ResNet:
    """CIFAR ResNet-32 (5 blocks per stage) without skip connections."""
    return _cifar_resnet(32, num_classes=num_classes, shortcut=False)


@register_model
def resnet44_noshort(*, num_classes: int = 10) -> ResNet:
    """CIFAR ResNet-44 (7 blocks per stage) without skip connections."""
    return _cifar_resnet(44, num_classes=num_classes, shortcut=False)


@register_model
def resnet50_16_noshort(*, num_classes: int = 10) -> ResNet:
    """CIFAR-style ResNet-50 (8 basic blocks per stage, 16/32/64 channels) without skips."""
    return _cifar_resnet(50, num_classes=num_classes, shortcut=False)


@register_model
def resnet56(*, num_classes: int = 10) -> ResNet:
    """CIFAR ResNet-56 (9 basic blocks per stage)."""
    return _cifar_resnet(56, num_classes=num_classes, shortcut=True)


@register_model
def resnet56_noshort(*, num_classes: int = 10) -> ResNet:
    """CIFAR ResNet-56 without skip connections."""
    return _cifar_resnet(56, num_classes=num_classes, shortcut=False)


@register_model
def resnet110(*, num_classes: int = 10) -> ResNet:
    """CIFAR ResNet-110 (18 basic blocks per stage)."""
    return _cifar_resnet(110, num_classes=num_classes, shortcut=True)


@register_model
def resnet110_noshort(*, num_classes: int = 10) -> ResNet:
    """CIFAR ResNet-110 without skip connections."""
    return _cifar_resnet(110, num_classes=num_classes, shortcut=False)


# --- Wide CIFAR ResNets (every width, stem included, times k) --------------------------------


@register_model
def wrn56_2(*, num_classes: int = 10) -> ResNet:
    """Wide ResNet-56, width factor 2 (32/64/128 channels)."""
    return _cifar_resnet(56, 2, num_classes=num_classes, shortcut=True)


@register_model
def wrn56_2_noshort(*, num_classes: int = 10) -> ResNet:
    """Wide ResNet-56, width factor 2, without skip connections."""
    return _cifar_resnet(56, 2, num_classes=num_classes, shortcut=False)


@register_model
def wrn56_4(*, num_classes: int = 10) -> ResNet:
    """Wide ResNet-56, width factor 4 (64/128/256 channels)."""
    return _cifar_resnet(56, 4, num_classes=num_classes, shortcut=True)


@register_model
def wrn56_4_noshort(*, num_classes: int = 10) -> ResNet:
    """Wide ResNet-56, width factor 4, without skip connections."""
    return _cifar_resnet(56, 4, num_classes=num_classes, shortcut=False)


@register_model
def wrn56_8(*, num_classes: int = 10) -> ResNet:
    """Wide ResNet-56, width factor 8 (128/256/512 channels)."""
    return _cifar_resnet(56, 8, num_classes=num_classes, shortcut=True)


@register_model
def wrn56_8_noshort(*, num_classes: int = 10) -> ResNet:
    """Wide ResNet-56, width factor 8, without skip connections."""
    return _cifar_resnet(56, 8, num_classes=num_classes, shortcut=False)


@register_model
def wrn110_2_noshort(*, num_classes: int = 10) -> ResNet:
    """Wide ResNet-110, width factor 2, without skip connections."""
    return _cifar_resnet(110, 2, num_classes=num_classes, shortcut=False)


@register_model
def wrn110_4_noshort(*, num_classes: int = 10) -> ResNet:
    """Wide ResNet-110, width factor 4, without skip connections."""
    return _cifar_resnet(110, 4, num_classes=num_classes, shortcut=False)
