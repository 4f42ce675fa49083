"""Tests of model_loader: model specs, checkpoint reading and strict loading."""
from __future__ import annotations

import sys
import textwrap
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
from conftest import DATA

from loss_landscape_toolkit.errors import ModelError
from loss_landscape_toolkit.models import create_model
from loss_landscape_toolkit.models.loading import build_model, load_checkpoint_state, load_model, load_state_into

REFERENCE_CKPT = DATA / "reference_resnet20_model_0.t7"


def raises_one_line(match: str):
    """``pytest.raises(ModelError, match=...)`` whose message must also be a single line."""

    class _Ctx:
        def __enter__(self):
            self._cm = pytest.raises(ModelError, match=match)
            self.info = self._cm.__enter__()
            return self.info

        def __exit__(self, *exc):
            suppressed = self._cm.__exit__(*exc)
            if suppressed:
                assert "\n" not in str(self.info.value), str(self.info.value)
            return suppressed

    return _Ctx()


@pytest.fixture
def reference_state() -> OrderedDict:
    ckpt = torch.load(REFERENCE_CKPT, map_location="cpu", weights_only=True)
    return ckpt["state_dict"]


@pytest.fixture
def clean_modules():
    """Forget modules imported by a test, so each test imports its own fresh copies."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


# --------------------------------------------------------------------------------------------
# The reference checkpoint
# --------------------------------------------------------------------------------------------


def test_reference_checkpoint_loads_into_resnet20(reference_state):
    torch.manual_seed(1)  # (seed 0 reproduces this checkpoint exactly, see test_models.py)
    fresh = create_model("resnet20")
    assert not torch.equal(fresh.conv1.weight, reference_state["conv1.weight"])

    net = load_model("resnet20", str(REFERENCE_CKPT))
    assert not net.training and all(not m.training for m in net.modules())
    loaded = net.state_dict()
    assert list(loaded) == list(reference_state)
    for key, value in reference_state.items():
        assert torch.equal(loaded[key], value), key
        assert loaded[key].dtype == value.dtype


def test_load_checkpoint_state_returns_the_state_dict_in_file_order(reference_state):
    state = load_checkpoint_state(str(REFERENCE_CKPT))
    assert list(state) == list(reference_state)  # 'epoch' and 'acc' are not in it
    assert all(torch.equal(state[k], v) for k, v in reference_state.items())


def test_load_model_without_checkpoint_is_in_eval_mode():
    net = load_model("vgg9", num_classes=5)
    assert not net.training
    assert net.classifier.out_features == 5


# --------------------------------------------------------------------------------------------
# Checkpoint formats
# --------------------------------------------------------------------------------------------


def test_bare_state_dict_loads(tmp_path, reference_state):
    path = tmp_path / "bare.pt"
    torch.save(reference_state, path)
    net = load_model("resnet20", str(path))
    assert torch.equal(net.linear.weight, reference_state["linear.weight"])


@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "in_state_dict"])
def test_data_parallel_prefix_is_stripped(tmp_path, reference_state, wrapped):
    prefixed = OrderedDict(("module." + k, v) for k, v in reference_state.items())
    path = tmp_path / "dp.t7"
    torch.save({"state_dict": prefixed, "epoch": 3} if wrapped else prefixed, path)
    state = load_checkpoint_state(str(path))
    assert list(state) == list(reference_state)
    net = load_model("resnet20", str(path))
    assert torch.equal(net.conv1.weight, reference_state["conv1.weight"])


def test_real_data_parallel_state_dict_loads_with_its_metadata(tmp_path):
    source = create_model("resnet20")
    wrapped = nn.DataParallel(source)
    path = tmp_path / "dp_real.pt"
    torch.save({"state_dict": wrapped.state_dict()}, path)
    state = load_checkpoint_state(str(path))
    assert list(state) == list(source.state_dict())
    assert state._metadata[""] == source.state_dict()._metadata[""]
    assert "bn1" in state._metadata and not any(k.startswith("module") for k in state._metadata)
    net = create_model("resnet20")
    load_state_into(net, state, source=str(path))
    assert torch.equal(net.layer3[2].conv2.weight, source.layer3[2].conv2.weight)


def test_partial_module_prefix_is_kept_and_then_rejected(tmp_path, reference_state):
    mixed = OrderedDict(reference_state)
    mixed["module.extra"] = torch.zeros(1)
    path = tmp_path / "mixed.pt"
    torch.save(mixed, path)
    state = load_checkpoint_state(str(path))
    assert "conv1.weight" in state and "module.extra" in state
    with raises_one_line(r"'module\.extra' is in the checkpoint .* \(0 keys missing, 1 unexpected\)"):
        load_state_into(create_model("resnet20"), state, source=str(path))


def test_missing_num_batches_tracked_is_filled_with_zero(reference_state):
    old_style = OrderedDict((k, v) for k, v in reference_state.items() if not k.endswith("num_batches_tracked"))
    assert len(old_style) < len(reference_state)
    net = create_model("resnet20")
    with torch.no_grad():
        net.bn1.num_batches_tracked.fill_(5)
    load_state_into(net, old_style, source="old.t7")
    assert int(net.bn1.num_batches_tracked) == 0
    assert torch.equal(net.bn1.running_var, reference_state["bn1.running_var"])


def test_partly_missing_num_batches_tracked_is_a_mismatch(reference_state):
    state = OrderedDict(reference_state)
    del state["layer2.0.bn1.num_batches_tracked"]
    with raises_one_line(r"'layer2\.0\.bn1\.num_batches_tracked' is missing .* \(1 keys missing, 0 unexpected\)"):
        load_state_into(create_model("resnet20"), state, source="partial.t7")


def test_dtype_is_converted_like_load_state_dict(reference_state):
    doubled = OrderedDict((k, v.double() if v.is_floating_point() else v) for k, v in reference_state.items())
    net = create_model("resnet20")
    load_state_into(net, doubled, source="f64.pt")
    assert net.conv1.weight.dtype == torch.float32
    assert torch.equal(net.conv1.weight, reference_state["conv1.weight"])


# --------------------------------------------------------------------------------------------
# Checkpoints that do not fit
# --------------------------------------------------------------------------------------------


def test_checkpoint_of_other_width_names_first_key_and_both_shapes():
    with raises_one_line(
        r"^checkpoint '.*reference_resnet20_model_0\.t7' does not fit the model: first difference at "
        r"'conv1\.weight': checkpoint has shape \(16, 3, 3, 3\), model has \(32, 3, 3, 3\) "
        r"\(216 keys missing, 0 unexpected\)\. Is --model the architecture this checkpoint was trained with\?$"
    ):
        load_model("wrn56_2", str(REFERENCE_CKPT))


def test_checkpoint_of_shallower_net_names_first_missing_key():
    with raises_one_line(
        r"first difference at 'layer1\.3\.conv1\.weight' is missing from the checkpoint "
        r"\(model has shape \(16, 16, 3, 3\)\) \(216 keys missing, 0 unexpected\)"
    ):
        load_model("resnet56", str(REFERENCE_CKPT))


def test_checkpoint_with_shortcuts_into_noshort_model_reports_unexpected_keys():
    with raises_one_line(r"first difference at 'layer2\.0\.shortcut\.0\.weight' is in the checkpoint "
                         r"\(shape \(32, 16, 1, 1\)\) but not in the model \(0 keys missing, 12 unexpected\)"):
        load_model("resnet20_noshort", str(REFERENCE_CKPT))


def test_head_size_mismatch(reference_state):
    net = create_model("resnet20", num_classes=7)
    with raises_one_line(r"'linear\.weight': checkpoint has shape \(10, 64\), model has \(7, 64\)"):
        load_state_into(net, reference_state, source="x.t7")


def test_failed_load_leaves_model_untouched(reference_state):
    net = create_model("resnet56")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ModelError):
        load_state_into(net, reference_state, source="r20.t7")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_non_tensor_value_in_state_is_rejected():
    state = OrderedDict(create_model("resnet20").state_dict())
    state["conv1.weight"] = [1, 2, 3]  # type: ignore[assignment]
    with raises_one_line(r"entry 'conv1\.weight' is a list, not a tensor"):
        load_state_into(create_model("resnet20"), state, source="bad.pt")


# --------------------------------------------------------------------------------------------
# Unreadable checkpoint files
# --------------------------------------------------------------------------------------------


def test_missing_checkpoint_file(tmp_path):
    with raises_one_line(r"checkpoint file '.*nope\.t7' does not exist.*--model_file"):
        load_checkpoint_state(str(tmp_path / "nope.t7"))


def test_checkpoint_path_is_a_directory(tmp_path):
    with raises_one_line(r"is a directory"):
        load_checkpoint_state(str(tmp_path))


@pytest.mark.parametrize("content", [b"hello, this is not a checkpoint\n", b"", b"# Notes\n"],
                         ids=["text", "empty", "markdown"])
def test_non_torch_file(tmp_path, content):
    path = tmp_path / "notes.t7"
    path.write_bytes(content)
    resave = r"torch\.save\(\{'state_dict': model\.state_dict\(\)\}, path\)"
    with raises_one_line(r"is not a readable torch file .*" + resave):
        load_checkpoint_state(str(path))


@pytest.mark.parametrize("name, kind", [("reference_resnet20_directions.h5", "direction"),
                                        ("reference_resnet20_surface_5x5.h5", "surface")])
def test_direction_or_surface_file_as_checkpoint_is_named_as_such(name, kind):
    with raises_one_line(rf"is an HDF5 file \(a {kind} file of this toolkit or the reference code\), not a "
                         r"PyTorch checkpoint; --model_file .*torch\.save, a \.t7 or \.pt file"):
        load_checkpoint_state(str(DATA / name))


def test_other_hdf5_file_as_checkpoint_is_named_as_such(tmp_path):
    import h5py

    path = tmp_path / "weights.h5"
    with h5py.File(path, "w") as f:
        f["conv1.weight"] = [1.0, 2.0]
    with raises_one_line(r"'.*weights\.h5' is an HDF5 file, not a PyTorch checkpoint"):
        load_checkpoint_state(str(path))


def test_whole_pickled_model_is_refused_with_resave_hint(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(create_model("resnet20"), path)
    with raises_one_line(
        r"holds Python objects .*whole model.*re-save only the weights with "
        r"torch\.save\(\{'state_dict': model\.state_dict\(\)\}, path\)"
    ):
        load_checkpoint_state(str(path))


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (torch.zeros(3), r"does not hold a state_dict: it is a Tensor"),
        ({"state_dict": [1, 2]}, r"its 'state_dict' entry is a list"),
        ({"epoch": 3, "acc": 91.5}, r"2 entries that are not string -> tensor \('epoch', 'acc'\)"),
        ({}, r"empty state_dict"),
    ],
    ids=["tensor", "state_dict_list", "no_tensors", "empty"],
)
def test_file_without_state_dict(tmp_path, payload, match):
    path = tmp_path / "odd.pt"
    torch.save(payload, path)
    with raises_one_line(match):
        load_checkpoint_state(str(path))


# --------------------------------------------------------------------------------------------
# Model specs
# --------------------------------------------------------------------------------------------

CUSTOM_MODULE = textwrap.dedent(
    """
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3 * 32 * 32, 4)

        def forward(self, x):
            return self.fc(x.flatten(1))

    def make():
        return Net()

    def broken():
        raise RuntimeError("no weights for you")

    def not_a_model():
        return {"fc": 1}

    def needs_args(width):
        return nn.Linear(width, 2)

    NOT_CALLABLE = 42
    """
)


def test_registry_name_spec_and_num_classes():
    net = build_model("resnet20", num_classes=3)
    assert net.linear.out_features == 3 and net.training


def test_unknown_registry_name_mentions_close_match_and_custom_specs():
    with raises_one_line(r"'resnet57'.*'resnet56'.*path/to/file\.py:factory"):
        build_model("resnet57")


def test_file_spec(tmp_path):
    path = tmp_path / "custom_net.py"
    path.write_text(CUSTOM_MODULE)
    net = build_model(f"{path}:make")
    assert type(net).__name__ == "Net"
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    assert type(build_model(f"{path}:Net")).__name__ == "Net"  # a class is a factory too


def test_file_spec_with_checkpoint(tmp_path):
    path = tmp_path / "custom_net.py"
    path.write_text(CUSTOM_MODULE)
    source = build_model(f"{path}:make")
    ckpt = tmp_path / "custom.pt"
    torch.save({"state_dict": source.state_dict()}, ckpt)
    net = load_model(f"{path}:make", str(ckpt))
    assert not net.training and torch.equal(net.fc.weight, source.fc.weight)


def test_file_spec_can_import_its_sibling_modules(tmp_path, clean_modules):
    (tmp_path / "lltest_sibling_blocks.py").write_text("import torch.nn as nn\nWIDTH = 6\n")
    path = tmp_path / "net_with_sibling.py"
    path.write_text("import torch.nn as nn\nimport lltest_sibling_blocks as b\n\n"
                    "def make():\n    return nn.Linear(2, b.WIDTH)\n")
    assert build_model(f"{path}:make").out_features == 6
    assert str(tmp_path) not in sys.path


def test_dotted_module_spec(tmp_path, monkeypatch, clean_modules):
    package = tmp_path / "lltest_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(CUSTOM_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    net = build_model("lltest_pkg.nets:make")
    assert net.fc.out_features == 4


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        ("missing", r"has no 'missing'.*callables found: Net, broken, make, needs_args, not_a_model"),
        ("broken", r"raised RuntimeError: no weights for you when called with no arguments"),
        ("not_a_model", r"returned a dict, expected a torch\.nn\.Module"),
        ("needs_args", r"raised TypeError: .*width"),
        ("NOT_CALLABLE", r"'NOT_CALLABLE' in .* is a int, not callable"),
    ],
)
def test_file_spec_factory_failures(tmp_path, factory, match):
    path = tmp_path / "custom_net.py"
    path.write_text(CUSTOM_MODULE)
    with raises_one_line(match):
        build_model(f"{path}:{factory}")


def test_file_spec_missing_file(tmp_path):
    with raises_one_line(r"model file not found: .*ghost\.py \(from spec"):
        build_model(f"{tmp_path / 'ghost.py'}:make")


def test_file_spec_directory(tmp_path):
    with raises_one_line(r"is not a regular file"):
        build_model(f"{tmp_path}/:make")


def test_file_spec_that_fails_to_import(tmp_path):
    path = tmp_path / "bad_net.py"
    path.write_text("import torch\nraise ValueError('layer sizes do not add up')\n")
    with raises_one_line(r"importing model file .*bad_net\.py failed with ValueError: layer sizes do not add up"):
        build_model(f"{path}:make")
    assert not any(getattr(m, "__file__", None) == str(path) for m in list(sys.modules.values()))


def test_file_spec_with_syntax_error(tmp_path):
    path = tmp_path / "syntax_net.py"
    path.write_text("def make(:\n    pass\n")
    with raises_one_line(r"failed with SyntaxError"):
        build_model(f"{path}:make")


def test_dotted_module_not_found(clean_modules):
    with raises_one_line(r"cannot import module 'lltest_no_such_pkg\.nets' .*"
                         r"No module named 'lltest_no_such_pkg'.*PYTHONPATH"):
        build_model("lltest_no_such_pkg.nets:make")


def test_dotted_module_that_raises_on_import(tmp_path, monkeypatch, clean_modules):
    (tmp_path / "lltest_raising_mod.py").write_text("raise ImportError('needs a GPU build')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with raises_one_line(r"importing module 'lltest_raising_mod' .* failed with ImportError: needs a GPU build"):
        build_model("lltest_raising_mod:make")


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("nets.py:", r"malformed model spec"),
        (":make", r"malformed model spec"),
        ("not a module:make", r"names neither a \.py file nor a dotted module"),
        ("", r"must be a non-empty string"),
    ],
)
def test_malformed_specs(spec, match):
    with raises_one_line(match):
        build_model(spec)
