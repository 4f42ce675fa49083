"""BatchNorm folded into convolutions (folding.py) against the unfolded model, in float64."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from loss_landscape_toolkit.directions import create_random_direction, tensors_of
from loss_landscape_toolkit.folding import fold_batchnorm, foldable_by_default
from loss_landscape_toolkit.models import create_model
from loss_landscape_toolkit.surface import compute_surface


class ConvBN(nn.Module):
    """conv1 -> bn1 -> relu; conv2 (no bias) -> bn2 (no affine) added to a skip from conv1's
    relu; conv3 feeds both bn3 and a second use, so it must stay unfolded."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4, affine=False)
        self.conv3 = nn.Conv2d(4, 4, 1, stride=2)
        self.bn3 = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(h + self.bn2(self.conv2(h)))
        c = self.conv3(h)
        return self.fc((self.bn3(c) + c).mean(dim=(2, 3)))


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, float64, eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.randn(m.num_features, generator=g))
                    m.bias.copy_(torch.randn(m.num_features, generator=g))
    return model.double().eval()


def test_folded_copy_equals_the_model_and_follows_its_weights_and_statistics():
    torch.manual_seed(0)
    model = randomized(ConvBN())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded, why = fold_batchnorm(model)
    assert folded is not None and folded.pairs == 2, why  # conv3 has two users: not folded
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(folded.module(x), model(x), rtol=1e-12, atol=1e-12)
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), k  # the model itself is untouched
        # move weights and statistics in place, as a grid point of "states" directions does
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(0.1 * torch.randn_like(t)).abs_()
        assert not torch.allclose(folded.module(x), model(x))  # stale until refreshed
        folded.refresh()
        torch.testing.assert_close(folded.module(x), model(x), rtol=1e-12, atol=1e-12)
    assert not any(isinstance(m, nn.BatchNorm2d) and m is not model.bn3 for m in folded.module.modules())


def test_models_without_pairs_or_untraceable_are_left_as_they_are():
    assert fold_batchnorm(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))[0] is None

    class Branchy(ConvBN):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                return super().forward(x)
            return super().forward(-x)

    folded, why = fold_batchnorm(Branchy())
    assert folded is None and "torch.fx" in why


def test_surface_with_folding_equals_the_unfolded_one_for_weights_and_states_directions():
    torch.manual_seed(1)
    model = randomized(create_model("resnet20", num_classes=5), seed=2).float()
    x, y = torch.randn(40, 3, 32, 32), torch.randint(0, 5, (40,))
    for dir_type in ("weights", "states"):
        direction = create_random_direction(tensors_of(model, dir_type), norm="filter", ignore="biasbn",
                                            generator=torch.Generator().manual_seed(3))
        common = dict(x=[-0.5, 0.0, 0.25], directions=[direction], dir_type=dir_type, batch_size=16,
                      channels_last=True)
        plain = compute_surface(model, (x, y), fold_bn=False, **common).values
        folded = compute_surface(model, (x, y), fold_bn=True, **common).values
        np.testing.assert_allclose(folded["train_loss"], plain["train_loss"], rtol=2e-5)
        np.testing.assert_allclose(folded["train_acc"], plain["train_acc"], atol=2.5 + 1e-9)  # 1 sample in 40


def test_folding_is_on_by_default_for_the_zoo_only():
    """A model of one's own may have Python side effects in its forward, which a traced graph
    would drop: it is folded only when asked."""
    assert foldable_by_default(create_model("resnet20"))
    assert not foldable_by_default(ConvBN())
