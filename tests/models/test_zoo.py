"""Tests of the model zoo: the reference's state_dict layout, forward/backward, and the registry."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import DATA

from loss_landscape_toolkit import models
from loss_landscape_toolkit.errors import ModelError, UsageError
from loss_landscape_toolkit.models import _registry, create_model, list_models, register_model

REFERENCE = json.loads((DATA / "reference_models.json").read_text())

EXPECTED_NAMES = [
    "vgg9", "densenet121",
    "resnet18", "resnet18_noshort", "resnet34", "resnet34_noshort", "resnet50", "resnet50_noshort",
    "resnet101", "resnet101_noshort", "resnet152", "resnet152_noshort",
    "resnet20", "resnet20_noshort", "resnet32_noshort", "resnet44_noshort", "resnet50_16_noshort",
    "resnet56", "resnet56_noshort", "resnet110", "resnet110_noshort",
    "wrn56_2", "wrn56_2_noshort", "wrn56_4", "wrn56_4_noshort", "wrn56_8", "wrn56_8_noshort",
    "wrn110_2_noshort", "wrn110_4_noshort",
]  # fmt: skip

# Forward/backward on real CPU tensors is slow for these (wide or deep) models.
# (On 2 CPU cores each takes 0.4-2 s; all 10 together about 12 s.)
SLOW_SMOKE = {
    "densenet121", "resnet50", "resnet50_noshort", "resnet101", "resnet101_noshort",
    "resnet152", "resnet152_noshort", "wrn56_8", "wrn56_8_noshort", "wrn110_4_noshort",
}  # fmt: skip


def state_listing(net: nn.Module) -> list[list]:
    """``[key, shape, dtype]`` per state_dict entry, in the format of reference_models.json."""
    return [
        [key, list(t.shape), str(t.dtype).removeprefix("torch.")] for key, t in net.state_dict().items()
    ]


def build_meta(name: str, **kwargs) -> nn.Module:
    """Build without allocating or initialising weights (fast even for resnet152)."""
    with torch.device("meta"):
        return create_model(name, **kwargs)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def test_list_models_is_the_sorted_set_of_29_reference_names():
    assert len(EXPECTED_NAMES) == 29
    assert list_models() == sorted(EXPECTED_NAMES)
    assert sorted(REFERENCE) == sorted(EXPECTED_NAMES)


def test_public_api_exports():
    assert set(models.__all__) == {"create_model", "list_models", "register_model"}


def test_unknown_name_suggests_close_match():
    with pytest.raises(ModelError, match=r"resnet57.*'resnet56'") as info:
        create_model("resnet57")
    message = str(info.value)
    assert "\n" not in message
    assert "list_models()" in message and "README" in message
    assert isinstance(info.value, UsageError)


def test_unknown_name_suggestion_ignores_case():
    with pytest.raises(ModelError, match="'vgg9'"):
        create_model("VGG-9")


def test_unknown_name_without_any_close_match_still_explains():
    with pytest.raises(ModelError, match=r"unknown model name 'transformer'.*list_models\(\)") as info:
        create_model("transformer")
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_bad_num_classes_is_a_model_error(bad):
    with pytest.raises(ModelError, match="num_classes must be a positive integer"):
        create_model("resnet20", num_classes=bad)


def test_non_string_name_is_a_type_error():
    with pytest.raises(TypeError, match="must be a str"):
        create_model(56)  # type: ignore[arg-type]


def test_register_model_adds_a_name_and_rejects_duplicates(monkeypatch):
    monkeypatch.setattr(_registry, "_model_entrypoints", dict(_registry._model_entrypoints))

    @register_model
    def tiny_test_net(*, num_classes: int = 10) -> nn.Module:
        return nn.Linear(4, num_classes)

    assert "tiny_test_net" in list_models()
    assert create_model("tiny_test_net", num_classes=3).out_features == 3
    with pytest.raises(ValueError, match="registered twice"):
        register_model(tiny_test_net)


# --------------------------------------------------------------------------------------------
# State_dict layout equals the reference classes' (so published checkpoints load unchanged)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_state_dict_layout_matches_reference(name):
    ref = REFERENCE[name]
    net = build_meta(name)
    assert all(t.device.type == "meta" for t in net.state_dict().values())

    listing = state_listing(net)
    assert listing == ref["state_dict"]  # keys, order, shapes and dtypes
    assert len(listing) == ref["n_state_entries"]
    # The reference hashes the JSON dump of exactly this listing (json.dumps defaults).
    assert hashlib.sha256(json.dumps(listing).encode()).hexdigest() == ref["state_dict_sha256"]

    assert [n for n, _ in net.named_parameters()] == ref["parameter_order"]
    params = list(net.parameters())
    assert len(params) == len(ref["parameter_order"])
    assert sum(p.numel() for p in params) == ref["n_parameters"]


def test_meta_construction_allocates_nothing_and_matches_cpu_construction():
    on_meta = build_meta("resnet20")
    on_cpu = create_model("resnet20")
    assert state_listing(on_meta) == state_listing(on_cpu)
    assert all(t.device.type == "cpu" for t in on_cpu.state_dict().values())


def test_seed_0_construction_reproduces_the_reference_resnet20_checkpoint():
    # reference_resnet20_model_0.t7 is the reference's resnet20 right after construction
    # under torch.manual_seed(0): same modules, created in the same order, with the same
    # default initialisers give bit-identical weights.
    ref = torch.load(DATA / "reference_resnet20_model_0.t7", weights_only=True)
    torch.manual_seed(0)
    net = create_model("resnet20")
    ours = net.state_dict()
    assert list(ours) == list(ref["state_dict"])
    for key, value in ref["state_dict"].items():
        assert torch.equal(ours[key], value), key


def test_models_use_pytorch_default_initialisation():
    torch.manual_seed(0)
    a = create_model("resnet20")
    torch.manual_seed(0)
    b = create_model("resnet20")
    for (ka, ta), (kb, tb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(ta, tb)
    bn = a.bn1
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.bias, torch.zeros_like(bn.bias))
    # Default kaiming_uniform(a=sqrt(5)) for convs: |w| <= 1/sqrt(fan_in).
    bound = 1 / (3 * 3 * 3) ** 0.5
    assert a.conv1.weight.abs().max() <= bound


# --------------------------------------------------------------------------------------------
# Forward / backward smoke tests on real tensors
# --------------------------------------------------------------------------------------------


def _smoke_params():
    for name in EXPECTED_NAMES:
        marks = [pytest.mark.slow] if name in SLOW_SMOKE else []
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(_smoke_params()))
def test_forward_backward(name):
    torch.manual_seed(0)
    net = create_model(name)
    x = torch.randn(2, 3, 32, 32)
    out = net(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    F.cross_entropy(out, torch.tensor([1, 7])).backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
    net.eval()
    with torch.no_grad():
        out_eval = net(x)
    assert out_eval.shape == (2, 10) and torch.isfinite(out_eval).all()


@pytest.mark.parametrize(
    ("name", "head", "in_features"),
    [
        ("vgg9", "classifier", 256),
        ("resnet20", "linear", 64),
        ("wrn56_2", "linear", 128),
        ("resnet18", "linear", 512),
        ("resnet50_noshort", "linear", 2048),
        ("densenet121", "linear", 1024),
    ],
)
def test_num_classes_sets_head_size(name, head, in_features):
    net = build_meta(name, num_classes=7)
    layer = getattr(net, head)
    assert (layer.out_features, layer.in_features) == (7, in_features)
    sd = net.state_dict()
    assert sd[f"{head}.weight"].shape == (7, in_features) and sd[f"{head}.bias"].shape == (7,)
    default = {k: s for k, s, _ in REFERENCE[name]["state_dict"]}
    # Nothing but the head changes.
    assert {k for k, v in sd.items() if list(v.shape) != default[k]} == {f"{head}.weight", f"{head}.bias"}


@pytest.mark.parametrize("name", ["resnet20", "vgg9"])
def test_num_classes_changes_output_size(name):
    net = create_model(name, num_classes=7)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)


# --------------------------------------------------------------------------------------------
# Behaviour of the building blocks (what the state_dict cannot show)
# --------------------------------------------------------------------------------------------


def _silence_residual_branch(block: nn.Module) -> None:
    """Make the block's conv branch output exactly zero before the skip addition."""
    last_bn = block.bn3 if hasattr(block, "bn3") else block.bn2
    with torch.no_grad():
        last_bn.weight.zero_()
        last_bn.bias.zero_()


@pytest.mark.parametrize(
    ("name", "has_skip"), [("resnet20", True), ("resnet20_noshort", False), ("resnet50", True)]
)
def test_identity_shortcut_adds_input_only_when_present(name, has_skip):
    net = create_model(name).eval()
    block = net.layer2[1]  # a block with an identity shortcut
    _silence_residual_branch(block)
    channels = block.conv1.in_channels
    x = torch.randn(2, channels, 8, 8)
    with torch.no_grad():
        out = block(x)
    expected = F.relu(x) if has_skip else torch.zeros_like(x)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "resnet50"])
def test_projection_shortcut_is_used_on_downsampling_blocks(name):
    net = create_model(name).eval()
    block = net.layer2[0]
    assert isinstance(block.shortcut, nn.Sequential)
    _silence_residual_branch(block)
    x = torch.randn(2, block.conv1.in_channels, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(block.shortcut(x)))


def test_noshort_blocks_have_no_shortcut_module():
    net = create_model("resnet56_noshort")
    assert not any("shortcut" in name for name, _ in net.named_modules())


def test_dense_layer_puts_new_features_before_its_input():
    net = create_model("densenet121").eval()
    layer = net.dense1[0]
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        out = layer(x)
    assert out.shape == (2, 64 + 32, 8, 8)
    torch.testing.assert_close(out[:, 32:], x)


def test_vgg9_layers():
    net = create_model("vgg9")
    pools = [m for m in net.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.ceil_mode and p.kernel_size == 2 and p.stride == 2 for p in pools)
    relus = [m for m in net.features if isinstance(m, nn.ReLU)]
    assert len(relus) == 7 and all(r.inplace for r in relus)
    assert [type(m) for m in net.fc] == [nn.Linear, nn.BatchNorm1d, nn.ReLU]
