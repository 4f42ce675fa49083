"""Directions: normalizations against their definitions, weights vs states, target directions,
scale invariance, seeds, and direction-file checks."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import DATA, SmallConvNet, make_small_data, make_small_net

from loss_landscape_toolkit import directions as npl
from loss_landscape_toolkit import h5io
from loss_landscape_toolkit.errors import FileFormatError
from loss_landscape_toolkit.evaluation import evaluate, make_batches


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ normalizations
@pytest.mark.parametrize("shape", [(6, 3, 3, 3), (5, 7)])  # conv weight, linear weight
def test_filter_normalization_matches_definition(shape):
    w, d0 = _rand(*shape, seed=1), _rand(*shape, seed=2)
    d = d0.clone()
    npl.normalize_direction(d, w, "filter")
    for i in range(shape[0]):  # every filter: norm of w's filter, direction of d0's filter
        assert torch.linalg.vector_norm(d[i]).item() == pytest.approx(
            torch.linalg.vector_norm(w[i]).item(), rel=1e-6)
        cos = torch.nn.functional.cosine_similarity(d[i].reshape(1, -1), d0[i].reshape(1, -1))
        assert cos.item() == pytest.approx(1.0, abs=1e-6)


def test_other_normalizations_match_definitions():
    w, d0 = _rand(4, 2, 3, 3, seed=3), _rand(4, 2, 3, 3, seed=4)
    d = d0.clone()
    npl.normalize_direction(d, w, "layer")
    assert torch.allclose(d, d0 * w.norm() / d0.norm())
    d = d0.clone()
    npl.normalize_direction(d, w, "weight")
    assert torch.equal(d, d0 * w)
    d = d0.clone()
    npl.normalize_direction(d, w, "dfilter")
    assert torch.allclose(d.reshape(4, -1).norm(dim=1), torch.ones(4))
    d = d0.clone()
    npl.normalize_direction(d, w, "dlayer")
    assert d.norm().item() == pytest.approx(1.0)
    d = d0.clone()
    npl.normalize_direction(d, w, "none")
    assert torch.equal(d, d0)
    with pytest.raises(ValueError):
        npl.normalize_direction(d0.clone(), w, "filters")


@pytest.mark.parametrize("ignore", ["biasbn", "none"])
def test_biasbn_rule(small_net, ignore):
    weights = npl.tensors_of(small_net, "weights")
    direction = npl.create_random_direction(weights, norm="filter", ignore=ignore,
                                            generator=torch.Generator().manual_seed(0))
    for d, w in zip(direction, weights):
        if w.dim() <= 1:  # biases and BN affine parameters
            assert torch.equal(d, torch.zeros_like(w) if ignore == "biasbn" else w)
        else:
            assert d.abs().sum() > 0


# ------------------------------------------------------------------ moving the network
def _loss(net, data):
    return evaluate(net, make_batches(*data, 16), num_classes=3)[0]


def test_weights_mode_leaves_bn_statistics_and_states_mode_moves_them(small_net):
    buffers = {k: v.clone() for k, v in small_net.state_dict().items() if "running" in k}
    for dir_type in ("weights", "states"):
        named = npl.named_tensors(small_net, dir_type)
        direction = npl.create_random_direction([t for _, t in named], norm="filter", ignore="none",
                                                generator=torch.Generator().manual_seed(5))
        setter = npl.PlaneSetter(small_net, [direction], dir_type=dir_type)
        setter.set([0.5])
        moved = {k: not torch.equal(v, buffers[k]) for k, v in small_net.state_dict().items() if k in buffers}
        assert all(moved.values()) == (dir_type == "states") and any(moved.values()) == (dir_type == "states")
        setter.restore()
        assert all(torch.equal(small_net.state_dict()[k], v) for k, v in buffers.items())


def test_plane_setter_matches_float64_formula(small_net):
    weights = npl.tensors_of(small_net, "weights")
    origin = [w.clone() for w in weights]
    g = torch.Generator().manual_seed(1)
    dx = npl.create_random_direction(weights, norm="filter", ignore="biasbn", generator=g)
    dy = npl.create_random_direction(weights, norm="filter", ignore="biasbn", generator=g)
    npl.PlaneSetter(small_net, [dx, dy], dir_type="weights").set([0.3, -0.7])
    for w, o, a, b in zip(npl.tensors_of(small_net, "weights"), origin, dx, dy):
        exact = o.double() + 0.3 * a.double() - 0.7 * b.double()
        # one rounding from float64: within one float32 ulp of the exact value
        ulp = torch.finfo(torch.float32).eps * exact.abs().clamp_min(torch.finfo(torch.float32).tiny)
        assert ((w.double() - exact).abs() <= ulp).all()


@pytest.mark.parametrize("dir_type", ["weights", "states"])
def test_target_direction_lands_on_both_models_exactly(dir_type):
    net1, net2 = make_small_net(0), make_small_net(1)
    reference1 = copy.deepcopy(net1.state_dict())
    direction = npl.create_target_direction(npl.tensors_of(net1, dir_type), npl.tensors_of(net2, dir_type))
    setter = npl.PlaneSetter(net1, [direction], dir_type=dir_type)
    setter.set([1.0])
    for (key, mine), theirs in zip(net1.state_dict().items(), net2.state_dict().values()):
        if mine.is_floating_point() and (dir_type == "states" or "running" not in key):
            assert torch.equal(mine, theirs), key
    setter.set([0.0])
    assert all(torch.equal(a, b) for a, b in zip(net1.state_dict().values(), reference1.values()))


def test_filter_normalized_curve_is_scale_invariant():
    """Multiply the conv feeding a BatchNorm by 10 (and its running statistics accordingly, so
    the network computes the same function): the filter-normalized 1D curve does not change,
    the unnormalized one does (Li et al. 2018, Sec. 4)."""
    data = make_small_data(64)
    net = make_small_net(0)
    scaled = copy.deepcopy(net)
    with torch.no_grad():
        scaled.conv2.weight.mul_(10)
        scaled.bn2.running_mean.mul_(10)
        scaled.bn2.running_var.mul_(100)
    alphas = np.linspace(-1, 1, 7)

    def curve(model, norm):
        model = copy.deepcopy(model)
        direction = npl.create_random_direction(npl.tensors_of(model, "weights"), norm=norm,
                                                ignore="biasbn", generator=torch.Generator().manual_seed(7))
        setter = npl.PlaneSetter(model, [direction], dir_type="weights")
        values = []
        for a in alphas:
            setter.set([a])
            values.append(_loss(model, data))
        return np.array(values)

    assert _loss(net, data) == pytest.approx(_loss(scaled, data), rel=1e-4)
    np.testing.assert_allclose(curve(net, "filter"), curve(scaled, "filter"), rtol=1e-3)
    assert np.max(np.abs(curve(net, "none") - curve(scaled, "none"))) > 1e-2


# ------------------------------------------------------------------ seeds
def test_seed_and_idx(small_net):
    weights = npl.tensors_of(small_net, "weights")
    spec = npl.AxisSpec("filter", "biasbn")

    def first(seed, idx):
        return npl.make_directions(weights, x=spec, seed=seed, idx=idx)[0][0]

    assert torch.equal(first(123, 0), first(123, 0))
    assert not torch.equal(first(123, 0), first(123, 1))  # --idx gives new directions
    assert not torch.equal(first(123, 1), first(123, 2))
    assert not torch.equal(first(123, 0), first(124, 0))
    x, y = npl.make_directions(weights, x=spec, y=spec, seed=1)
    assert not torch.equal(x[0], y[0])
    x, y = npl.make_directions(weights, x=spec, y=spec, same_dir=True, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(x, y))


def test_cosine_similarity_against_numpy():
    x = [_rand(3, 4, seed=1), _rand(5, seed=2), torch.tensor(3.0)]
    y = [_rand(3, 4, seed=3), _rand(5, seed=4), torch.tensor(1.0)]
    xv = np.concatenate([t.numpy().ravel() for t in x[:2]])
    yv = np.concatenate([t.numpy().ravel() for t in y[:2]])  # 0-dim entries are skipped
    assert npl.cosine_similarity(x, y) == pytest.approx(xv @ yv / np.linalg.norm(xv) / np.linalg.norm(yv))


# ------------------------------------------------------------------ direction files
def test_direction_file_round_trip_and_refusals(tmp_path, small_net):
    named = npl.named_tensors(small_net, "weights")
    dirs = npl.make_directions([t for _, t in named], x=npl.AxisSpec(), y=npl.AxisSpec())
    path = str(tmp_path / "dirs.h5")
    npl.save_directions(path, dirs, named=named, attrs={"dir_type": "weights"})
    loaded = npl.load_directions(path, small_net, dir_type="weights", ndirections=2)
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(loaded.directions[1], dirs[1]))
    assert loaded.attrs["tensor_names"][0] == "conv1.weight"  # decoded from JSON
    with pytest.raises(FileFormatError, match="already exists"):
        npl.save_directions(path, dirs, named=named, attrs={})
    with pytest.raises(FileFormatError, match="--dir_type weights"):
        npl.load_directions(path, small_net, dir_type="states", ndirections=1)

    class Other(SmallConvNet):  # same tensor count, different names
        pass
    other = Other()
    other.conv1 = torch.nn.Conv2d(3, 4, 5, padding=2)
    with pytest.raises(FileFormatError, match="shape"):
        npl.load_directions(path, other, dir_type="weights", ndirections=1)

    one_d = str(tmp_path / "one.h5")
    npl.save_directions(one_d, dirs[:1], named=named, attrs={})
    with pytest.raises(FileFormatError, match="only an x direction"):
        npl.load_directions(one_d, small_net, dir_type="weights", ndirections=2)


def test_reference_direction_file_fits_our_resnet20():
    """The direction file the reference wrote for its resnet20 loads into our resnet20."""
    from loss_landscape_toolkit.models import create_model

    net = create_model("resnet20")
    dfile = npl.load_directions(str(DATA / "reference_resnet20_directions.h5"), net,
                                dir_type="weights", ndirections=2)
    assert len(dfile.directions[0]) == 65
    # the reference's own filter normalization: each conv filter has the model's filter norm
    from loss_landscape_toolkit.models.loading import load_checkpoint_state

    state = load_checkpoint_state(str(DATA / "reference_resnet20_model_0.t7"))
    w = state["conv1.weight"].numpy()
    d = dfile.directions[0][0]
    np.testing.assert_allclose(np.linalg.norm(d.reshape(16, -1), axis=1),
                               np.linalg.norm(w.reshape(16, -1), axis=1), rtol=1e-5)
    with pytest.raises(FileFormatError, match="another model|tensors"):
        npl.load_directions(str(DATA / "reference_resnet20_directions.h5"), create_model("resnet56"),
                            dir_type="weights", ndirections=1)


def test_surface_file_is_not_a_direction_file():
    with pytest.raises(FileFormatError, match="surface file"):
        h5io.read_direction_file(str(DATA / "reference_resnet20_surface_5x5.h5"))


def test_reference_recipe_reproduces_its_direction_file_bit_for_bit():
    """The reference seeds the global RNG with 123, builds the model (which draws its init),
    loads the checkpoint, then draws torch.randn per parameter, x then y. Normalizing those
    numbers with our filter/biasbn code gives its direction file exactly: an independent check
    of our normalization against the reference's own output."""
    from loss_landscape_toolkit.models import create_model
    from loss_landscape_toolkit.models.loading import load_checkpoint_state

    torch.manual_seed(123)
    net = create_model("resnet20")
    net.load_state_dict(load_checkpoint_state(str(DATA / "reference_resnet20_model_0.t7")))
    weights = npl.tensors_of(net, "weights")
    reference = h5io.read_direction_file(str(DATA / "reference_resnet20_directions.h5"))
    for stored in reference.directions:  # x, then y from the same stream
        ours = [torch.randn(w.size()) for w in weights]
        npl.normalize_directions(ours, weights, norm="filter", ignore="biasbn")
        assert all(np.array_equal(a, b.numpy()) for a, b in zip(stored, ours))
