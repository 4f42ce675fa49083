"""Shared tiny cases: small networks, data, and a runner for the real command-line scripts."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "fixtures"
TINY_MODEL = f"{DATA / 'tiny_model.py'}:tiny"
SLOW_MODEL = f"{DATA / 'tiny_model.py'}:slow"
MPIRUN = Path(sys.executable).parent / "mpirun"
# a line of the training log, in the reference's format
LOG_LINE = re.compile(r"^e: (\d+) loss: \d+\.\d{5} train_err: \d+\.\d{3} test_top1: (\d+\.\d{3}) "
                      r"test_loss \d+\.\d{5} $")
# common flags of CLI tests: a tiny conv net on the digits data, one thread (reproducible sums)
BASE = ["--model", TINY_MODEL, "--dataset", "digits", "--no_progress", "--threads", "1"]

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DATA))


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


_current_test: list = [None]


@pytest.fixture
def one_thread():
    """torch on one thread for the test: tiny products take ~1 ms, and with 2 threads on 2 busy
    cores ~30x longer; numbers are also reproducible. Use with pytest.mark.usefixtures."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _remember_test(request):
    """The running test's node, so that run_script can check its markers."""
    _current_test[0] = request.node
    yield
    _current_test[0] = None


def run_script(script: str, *args: str, cwd: Path, nproc: int = 0, timeout: float = 120,
               env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``script`` (a file at the project root) with the test interpreter, optionally under
    ``mpirun -n nproc``, and return the finished process (text output captured)."""
    cmd = [sys.executable, str(ROOT / script), *args]
    if nproc:
        node = _current_test[0]
        assert node is None or node.get_closest_marker("mpi"), f"{node.name} starts mpirun: mark it mpi"
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


def assert_main_usage_error(capsys, main, argv, *fragments: str) -> str:
    """``main(argv)`` of a CLI, in this process as the script runs it: exit code 2, exactly one
    line on stderr, no traceback, containing ``fragments``."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A checkpoint of the tiny model, in the reference's format, in tmp_path."""
    import tiny_model

    path = tmp_path / "model_10.t7"
    torch.save({"state_dict": tiny_model.tiny().state_dict(), "epoch": 10, "acc": 50.0}, path)
    return path


def run_cli(cwd: Path, *args: str, script: str = "plot_surface.py", nproc: int = 0,
            **kw) -> subprocess.CompletedProcess:
    """Run a CLI with BASE flags and assert it succeeded."""
    proc = run_script(script, *BASE, *args, cwd=cwd, nproc=nproc, **kw)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc
