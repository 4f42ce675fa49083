"""The Python entry point compute_surface, checked against a direct evaluation."""
from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_small_data, make_small_net

from loss_landscape_toolkit import directions as npl
from loss_landscape_toolkit import h5io
from loss_landscape_toolkit.errors import FileFormatError
from loss_landscape_toolkit.surface import compute_surface


def _direct_losses(net, data, directions, xs, ys):
    """Loss at every grid point, by moving a copy of the net with plain tensor arithmetic."""
    net = copy.deepcopy(net)
    origin = [p.detach().clone() for p in net.parameters()]
    out = np.zeros((len(ys), len(xs)))
    for iy, b in enumerate(ys):
        for ix, a in enumerate(xs):
            with torch.no_grad():
                for p, o, dx, dy in zip(net.parameters(), origin, *directions):
                    p.copy_(o + a * dx + b * dy)
                out[iy, ix] = F.cross_entropy(net(data[0]), data[1]).item()
    return out


def test_compute_surface_matches_direct_evaluation(small_net, small_data):
    before = copy.deepcopy(small_net.state_dict())
    weights = npl.tensors_of(small_net, "weights")
    g = torch.Generator().manual_seed(3)
    directions = [npl.create_random_direction(weights, norm="filter", ignore="biasbn", generator=g)
                  for _ in range(2)]
    xs, ys = np.linspace(-1, 1, 4), np.linspace(-0.5, 0.5, 3)
    surf = compute_surface(small_net, small_data, x=xs, y=ys, directions=directions, batch_size=7)
    assert surf.values["train_loss"].shape == (3, 4)
    np.testing.assert_allclose(surf.values["train_loss"],
                               _direct_losses(small_net, small_data, directions, xs, ys), rtol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(small_net.state_dict().values(), before.values()))


def test_compute_surface_1d_with_test_data_and_a_file(tmp_path, small_net, small_data):
    test = make_small_data(20, seed=9)
    path = str(tmp_path / "s.h5")
    surf = compute_surface(small_net, small_data, test_data=test, x=np.linspace(-1, 1, 5), surf_file=path)
    assert set(surf.values) == {"train_loss", "train_acc", "test_loss", "test_acc"}
    assert surf.values["train_loss"].shape == (5,)
    centre_loss = F.cross_entropy(small_net(test[0]), test[1]).item()
    assert surf.values["test_loss"][2] == pytest.approx(centre_loss, rel=1e-5)
    on_disk = h5io.read_surface_file(path)
    np.testing.assert_array_equal(on_disk.arrays["train_loss"], surf.values["train_loss"])
    again = compute_surface(small_net, small_data, test_data=test, x=np.linspace(-1, 1, 5), surf_file=path)
    assert again.stats.computed == 0  # resumed: nothing left to do


@pytest.mark.parametrize("change, fragment", [
    ({"seed": 7}, "other directions"),
    ({"model": "other"}, "another centre model"),
    ({"data": "other"}, "train_data"),
    ({"loss_name": "mse"}, "loss_name 'crossentropy' (now 'mse')"),
    ({"x": np.linspace(-1, 1, 4)}, "other x coordinates"),
])
def test_compute_surface_refuses_to_resume_a_file_made_otherwise(tmp_path, small_net, small_data,
                                                                 change, fragment):
    """A second call on the same file with another seed, model, data, loss or grid would
    silently return the first call's values: it is refused, and the file is left as it was."""
    path = tmp_path / "s.h5"
    base = dict(x=np.linspace(-1, 1, 5), seed=3, surf_file=str(path))
    compute_surface(small_net, small_data, **base)
    before = path.read_bytes()
    model = make_small_net(seed=5) if change.get("model") else small_net
    data = make_small_data(30, seed=4) if change.get("data") else small_data
    kwargs = {**base, **{k: v for k, v in change.items() if k not in ("model", "data")}}
    with pytest.raises(FileFormatError, match=re.escape(fragment)):
        compute_surface(model, data, **kwargs)
    assert path.read_bytes() == before


def test_speed_options_change_results_only_at_rounding_level(small_data):
    xs = np.linspace(-1, 1, 3)
    plain = compute_surface(make_small_net(), small_data, x=xs, y=xs)
    fast = compute_surface(make_small_net(), small_data, x=xs, y=xs, channels_last=True, compile=True)
    np.testing.assert_allclose(fast.values["train_loss"], plain.values["train_loss"], rtol=1e-4)


def test_several_points_per_forward_and_bf16(small_data):
    xs, ys = np.linspace(-1, 1, 3), np.linspace(-1, 1, 4)
    plain = compute_surface(make_small_net(), small_data, x=xs, y=ys)
    vmapped = compute_surface(make_small_net(), small_data, x=xs, y=ys, points_per_forward=5)
    np.testing.assert_allclose(vmapped.values["train_loss"], plain.values["train_loss"], rtol=1e-5)
    np.testing.assert_array_equal(vmapped.values["train_acc"], plain.values["train_acc"])
    half = compute_surface(make_small_net(), small_data, x=xs, y=ys, bf16=True)
    np.testing.assert_allclose(half.values["train_loss"], plain.values["train_loss"], rtol=3e-2)
    assert not np.array_equal(half.values["train_loss"], plain.values["train_loss"])
