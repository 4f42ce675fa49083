"""What runs fast by default: the memory format and the thread count chosen without flags."""
from __future__ import annotations

import os

import pytest
import torch
from conftest import make_small_data, make_small_net, run_cli
from torch import nn

from loss_landscape_toolkit._devices import set_threads
from loss_landscape_toolkit.evaluation import resolve_channels_last
from loss_landscape_toolkit.surface import compute_surface


class FlattensWithView(nn.Module):
    """A convolutional model whose forward cannot take NHWC inputs (``view`` needs NCHW)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        h = self.conv(x)
        return self.fc(h.view(h.size(0), -1))


def _is_nhwc(model: nn.Module) -> bool:
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()


def test_convolutional_models_go_nhwc_by_default():
    model, x = make_small_net(), torch.randn(4, 3, 8, 8)
    assert resolve_channels_last(None, model, x) == (True, "convolutional model")
    assert _is_nhwc(model)


def test_a_forward_that_cannot_take_nhwc_falls_back_and_says_why():
    model = FlattensWithView()
    chosen, why = resolve_channels_last(None, model, torch.randn(4, 3, 8, 8))
    assert not chosen and "fails on NHWC inputs" in why and "view" in why
    assert not _is_nhwc(model) and model(torch.randn(2, 3, 8, 8)).shape == (2, 10)  # left usable


def test_no_convolutions_or_no_images_stay_nchw_and_a_given_choice_wins():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    assert resolve_channels_last(None, mlp, torch.randn(4, 3, 8, 8)) == (False, "no 2D convolutions")
    assert resolve_channels_last(None, make_small_net(), torch.randn(4, 10))[0] is False
    model = make_small_net()
    assert resolve_channels_last(False, model, torch.randn(4, 3, 8, 8)) == (False, "given")
    assert not _is_nhwc(model)


def test_compute_surface_default_equals_nchw_to_rounding():
    net, data = make_small_net(), make_small_data()
    fast = compute_surface(net, data, x=[-0.5, 0.0, 0.5])
    plain = compute_surface(make_small_net(), data, x=[-0.5, 0.0, 0.5], channels_last=False)
    torch.testing.assert_close(torch.tensor(fast.values["train_loss"]),
                               torch.tensor(plain.values["train_loss"]), rtol=1e-5, atol=1e-6)


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_come_from_the_allocation(monkeypatch, restore_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert set_threads(None) == "3 (SLURM_CPUS_PER_TASK)" and torch.get_num_threads() == 3
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    cores = len(os.sched_getaffinity(0))
    assert set_threads(None, ranks_on_node=cores).startswith(f"1 ({cores} core(s) / {cores} process(es)")
    assert torch.get_num_threads() == 1
    assert set_threads(2, ranks_on_node=cores) == "2 (--threads)" and torch.get_num_threads() == 2


def test_the_start_up_report_says_what_was_chosen(tmp_path):
    proc = run_cli(tmp_path, "--x=-1:1:3")
    line = next(line for line in proc.stdout.splitlines() if line.startswith("speed: "))
    assert "channels_last on (convolutional model)" in line and "compile off" in line, line
    proc = run_cli(tmp_path, "--x=-1:1:3", "--no_channels_last", "--surf_file", "plain.h5")
    assert "channels_last off (given)" in proc.stdout
