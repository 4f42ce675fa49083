"""Shared tiny cases: small networks, data, and a runner for the real command-line scripts."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
TINY_MODEL = f"{DATA / 'tiny_model.py'}:tiny"
MPIRUN = Path(sys.executable).parent / "mpirun"

sys.path.insert(0, str(ROOT))


class SmallConvNet(nn.Module):
    """conv(bias) -> BN -> ReLU -> conv -> BN -> ReLU -> pool -> linear: every kind of tensor."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(5)
        self.fc = nn.Linear(5, num_classes)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(self.bn2(self.conv2(h)))
        return self.fc(h.mean(dim=(2, 3)))


def make_small_net(seed: int = 0) -> SmallConvNet:
    """A SmallConvNet with non-trivial BatchNorm statistics and affine parameters."""
    torch.manual_seed(seed)
    net = SmallConvNet()
    with torch.no_grad():
        for bn in (net.bn1, net.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return net.eval()


def make_small_data(n: int = 48, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


@pytest.fixture
def small_net() -> SmallConvNet:
    return make_small_net()


@pytest.fixture
def small_data() -> tuple[torch.Tensor, torch.Tensor]:
    return make_small_data()


def run_script(script: str, *args: str, cwd: Path, nproc: int = 0, timeout: float = 120,
               env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``script`` (a file at the project root) with the test interpreter, optionally under
    ``mpirun -n nproc``, and return the finished process (text output captured)."""
    cmd = [sys.executable, str(ROOT / script), *args]
    if nproc:
        cmd = [str(MPIRUN), "-n", str(nproc), *cmd]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def assert_usage_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit code 2, exactly one line on stderr, no traceback, containing ``fragments``."""
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err
