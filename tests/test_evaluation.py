"""check_model_fits: one forward on a few samples before a grid, refusing outputs the loss cannot use."""
from __future__ import annotations

import copy

import misfit_models
import pytest
import torch
from torch import nn

from loss_landscape_toolkit.errors import ModelError
from loss_landscape_toolkit.evaluation import check_model_fits, make_batches


def _digits_like_batch(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 32, 32, generator=g), torch.arange(n) % 10


class NoisyNet(nn.Module):
    """Draws random numbers in its forward and has BatchNorm: the check must leave both alone."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 10)

    def forward(self, x):
        h = self.bn(x).mean(dim=(2, 3))
        return self.fc(h + 0.01 * torch.randn_like(h))


def test_check_model_fits_changes_neither_the_model_nor_the_random_stream():
    torch.manual_seed(0)
    net = NoisyNet().train()
    net.bn.running_mean.fill_(0.5)
    before_state = copy.deepcopy(net.state_dict())
    before_rng = torch.get_rng_state()
    check_model_fits(net, _digits_like_batch(), num_classes=10)
    assert torch.equal(torch.get_rng_state(), before_rng)
    assert net.training and net.bn.training  # modes put back
    after = net.state_dict()
    assert all(torch.equal(before_state[k], after[k]) for k in before_state)  # BatchNorm stats too


def test_check_model_fits_runs_only_a_few_samples():
    seen = []
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    net.register_forward_pre_hook(lambda _module, args: seen.append(args[0].shape[0]))
    check_model_fits(net, make_batches(*_digits_like_batch(), 16)[0], num_classes=10)
    assert seen == [4]


@pytest.mark.parametrize("factory, loss_name", [
    (misfit_models.nan_out, "crossentropy"),  # a NaN loss is a landscape value, not an error
    (misfit_models.twelve_classes, "crossentropy"),  # labels 0..9 fit in 12 scores
    (misfit_models.pair, "crossentropy"),  # (logits, features): the first element is the output
])
def test_check_model_fits_accepts_outputs_the_loss_can_use(factory, loss_name):
    check_model_fits(factory(), _digits_like_batch(), num_classes=10, loss_name=loss_name)


@pytest.mark.parametrize("factory, loss_name, fragments", [
    (misfit_models.flat_input, "crossentropy",
     ["cannot run on the data", "shape (4, 3, 32, 32)", "RuntimeError: mat1 and mat2"]),
    (misfit_models.five_classes, "crossentropy",
     ["shape (4, 3, 32, 32)", "returned a tensor of shape (4, 5) (float32)", "(10 classes)",
      "expected floating-point logits of shape (4, 10)", "head with 10 outputs"]),
    (misfit_models.twelve_classes, "mse", ["returned a tensor of shape (4, 12)", "head with 10 outputs"]),
    (misfit_models.features, "crossentropy",
     ["returned a dict with keys ['features']", "dict or object with 'logits'"]),
    (misfit_models.rank3, "crossentropy", ["returned a tensor of shape (4, 10, 1)", "one row per sample"]),
    (misfit_models.mixed_rows, "crossentropy", ["returned a tensor of shape (8, 5)", "one row per sample"]),
    (misfit_models.indices, "crossentropy", ["returned a tensor of shape (4,) (int64)", "not class indices"]),
])
def test_check_model_fits_refuses_a_misfit_with_the_shapes_seen(factory, loss_name, fragments):
    with pytest.raises(ModelError) as info:
        check_model_fits(factory(), _digits_like_batch(), num_classes=10, loss_name=loss_name)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
