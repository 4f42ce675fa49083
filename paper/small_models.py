"""Narrow plain ResNet-20s for the small-scale width study (fig6_width.py), as ``--model`` factories.

The paper widens ResNet-56 by k = 2, 4, 8 (``wrn56_k``); on a CPU the small scale instead narrows
ResNet-20-noshort (16/32/64 channels) to a quarter and a half of its width, so that the three
widths k = 1, 2, 4 of a 4/8/16-channel base are these two and ``resnet20_noshort`` itself:

    python cifar10/main.py --model paper/small_models.py:resnet20_noshort_w4 --dataset digits ...
"""
from __future__ import annotations

from loss_landscape_toolkit.models.resnet import BasicBlock, ResNet


def _plain_resnet20(base: int) -> ResNet:
    """ResNet-20 without skip connections, with ``base``/2·base/4·base channels in its stages."""
    return ResNet(BasicBlock, [3, 3, 3], [base, 2 * base, 4 * base], stem_width=base, shortcut=False)


def resnet20_noshort_w4() -> ResNet:
    """A quarter of ResNet-20-noshort's width: 4/8/16 channels (k = 1 of the small width study)."""
    return _plain_resnet20(4)


def resnet20_noshort_w8() -> ResNet:
    """Half of ResNet-20-noshort's width: 8/16/32 channels (k = 2)."""
    return _plain_resnet20(8)
