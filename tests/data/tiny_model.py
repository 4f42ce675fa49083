"""Tiny models for fast command-line tests (used as --model tests/data/tiny_model.py:NAME)."""
import os
import time

import torch
from torch import nn


class TinyNet(nn.Module):
    """conv -> BatchNorm -> ReLU -> global average pool -> linear; 3xHxW in, 10 classes out."""

    def __init__(self, width: int = 4, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(h.mean(dim=(2, 3)))


def tiny():
    torch.manual_seed(0)
    return TinyNet()


def tiny_wide():
    torch.manual_seed(0)
    return TinyNet(width=6)


class SlowNet(TinyNet):
    """TinyNet that sleeps in every forward, so a run lasts long enough to be interrupted."""

    def forward(self, x):
        time.sleep(float(os.environ.get("TINY_SLEEP", "0.05")))
        return super().forward(x)


def slow():
    """SlowNet; with TINY_PIDDIR set, each process writes its pid to rank<PMI_RANK>.pid there."""
    piddir = os.environ.get("TINY_PIDDIR")
    if piddir:
        with open(os.path.join(piddir, f"rank{os.environ.get('PMI_RANK', '0')}.pid"), "w") as f:
            f.write(str(os.getpid()))
    torch.manual_seed(0)
    return SlowNet()


class FailingNet(TinyNet):
    """TinyNet that raises on MPI rank 1 at its third forward pass (tests failure handling)."""

    calls = 0

    def forward(self, x):
        FailingNet.calls += 1
        if os.environ.get("PMI_RANK") == "1" and FailingNet.calls >= 3:
            raise RuntimeError("injected failure on rank 1")
        time.sleep(0.02)
        return super().forward(x)


def failing():
    torch.manual_seed(0)
    return FailingNet()


def unseeded():
    """A TinyNet whose initialisation differs in every process (its own randomness)."""
    torch.manual_seed(os.getpid())
    return TinyNet()
