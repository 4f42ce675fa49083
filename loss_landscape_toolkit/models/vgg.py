"""VGG-9 for 3x32x32 (CIFAR) inputs, as used in the loss-landscape paper.

Layer layout (indices of ``features`` matter: they are the checkpoint keys)::

    features:   [conv3x3(bias) - BN - ReLU] x2, maxpool, x2 at 128, maxpool, x3 at 256, maxpool
    fc:         Linear(256 * 4 * 4 -> 256) - BatchNorm1d - ReLU
    classifier: Linear(256 -> num_classes)
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ._registry import register_model

# Channel counts of the 3x3 convolutions; "M" is a 2x2 max-pool.
_VGG9_CONFIG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M")


def _make_features(config: Sequence[int | str], in_channels: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = []
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
        else:
            assert isinstance(item, int)
            layers += [
                nn.Conv2d(in_channels, item, kernel_size=3, padding=1, bias=True),
                nn.BatchNorm2d(item),
                nn.ReLU(inplace=True),
            ]
            in_channels = item
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """Convolutional ``features``, a hidden fully connected block ``fc`` and a ``classifier``.

    Args:
        config: Convolution widths and ``"M"`` max-pools; three pools turn 32x32 into 4x4.
        num_classes: Output size of the classifier.
        hidden: Width of the hidden fully connected layer.
    """

    def __init__(self, config: Sequence[int | str] = _VGG9_CONFIG, num_classes: int = 10, hidden: int = 256):
        super().__init__()
        self.features = _make_features(config)
        last = [c for c in config if c != "M"][-1]
        assert isinstance(last, int)
        self.fc = nn.Sequential(
            nn.Linear(last * 4 * 4, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x)
        out = self.fc(out.flatten(1))
        return self.classifier(out)


@register_model
def vgg9(*, num_classes: int = 10) -> VGG:
    """VGG-9: seven 3x3 convolutions (64, 64, 128, 128, 256, 256, 256) and two linear layers."""
    return VGG(_VGG9_CONFIG, num_classes=num_classes)
