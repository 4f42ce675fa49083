"""PCA directions and projections (projection.py), checked against independent computations."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SmallConvNet, make_small_net

from loss_landscape_toolkit import directions as net_plotter
from loss_landscape_toolkit import h5io, projection
from loss_landscape_toolkit._naming import pca_dir_file
from loss_landscape_toolkit.errors import FileFormatError, ModelError, UsageError


def _plane(p: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((p, 2)))
    return q[:, 0], q[:, 1]


# --------------------------------------------------------------------------- the PCA itself
def test_pca_of_a_path_in_a_plane_recovers_the_plane():
    e1, e2 = _plane(300)
    t = np.linspace(0, 1, 25)
    a, b = 3 * (1 - t) ** 2, np.sin(4 * t)  # a curved path, so both directions matter
    offset = np.random.default_rng(1).standard_normal(300)  # the plane need not pass through 0
    rows = offset + np.outer(a, e1) + np.outer(b, e2)
    result = projection.pca(rows.copy())
    assert result.explained_variance_ratio_.sum() == pytest.approx(1.0, abs=1e-12)
    basis = np.stack([e1, e2])
    # each component lies in the plane (unit length, nothing outside) and they are orthonormal
    inside = result.components @ basis.T
    assert np.allclose(np.linalg.norm(inside, axis=1), 1.0, atol=1e-10)
    assert np.allclose(result.components @ result.components.T, np.eye(2), atol=1e-10)


def test_pca_matches_eigendecomposition_of_the_covariance(monkeypatch):
    rng = np.random.default_rng(2)
    n, p = 17, 60
    rows = rng.standard_normal((n, p)) * np.linspace(3, 0.1, p) + rng.standard_normal(p)
    centred = rows - rows.mean(axis=0)
    cov = centred.T @ centred / (n - 1)  # (p, p), an independent route to the same answer
    eigval, eigvec = np.linalg.eigh(cov)
    eigval, eigvec = eigval[::-1], eigvec[:, ::-1]
    monkeypatch.setattr(projection, "_QR_BLOCK_BYTES", 8 * n * 7)  # many QR blocks of 7 columns
    result = projection.pca(rows.copy())
    assert np.allclose(result.explained_variance_, eigval[:2], rtol=1e-10)
    assert np.allclose(result.singular_values_, np.sqrt(eigval[:2] * (n - 1)), rtol=1e-10)
    assert np.allclose(result.explained_variance_ratio_, eigval[:2] / np.trace(cov), rtol=1e-10)
    for k in range(2):
        assert abs(result.components[k] @ eigvec[:, k]) == pytest.approx(1.0, abs=1e-9)
    # the same with one block, and the sign convention: row 0 has a negative coordinate
    monkeypatch.undo()
    again = projection.pca(rows.copy())
    assert np.allclose(again.components, result.components, atol=1e-10)
    assert np.all(result.components @ rows[0] < 0)


def test_pca_centres_in_place_without_a_second_copy():
    rows = np.random.default_rng(3).standard_normal((20, 250_000))  # 40 MB
    mean = rows.mean(axis=0)
    expected = rows - mean
    tracemalloc.start()
    try:
        projection.pca(rows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.allclose(rows, expected)  # documented: centred in place
    assert peak < 0.9 * rows.nbytes, f"peak {peak / 2**20:.1f} MiB for a {rows.nbytes / 2**20:.0f} MiB matrix"


def test_pca_refuses_degenerate_input():
    with pytest.raises(ValueError, match="all rows are equal"):
        projection.pca(np.ones((4, 10)))
    with pytest.raises(ValueError, match="n_components"):
        projection.pca(np.random.default_rng(0).standard_normal((2, 10)))


# --------------------------------------------------------------------------- flat vectors, projections
def test_flattener_states_integer_entries_take_no_part():
    net = make_small_net()
    net.register_parameter("scale", torch.nn.Parameter(torch.tensor(2.5)))  # a 0-dim float tensor
    named = net_plotter.named_tensors(net, "states")
    flat = projection.Flattener(named)
    floating = [t for _, t in named if t.is_floating_point()]
    assert flat.size == sum(t.numel() for t in floating)
    vec = flat.flatten([t for _, t in named])
    assert np.array_equal(vec, np.concatenate([t.double().reshape(-1).numpy() for t in floating]))
    back = flat.unflatten(vec)
    for (name, t), b in zip(named, back):
        assert b.shape == t.shape
        if t.is_floating_point():
            assert torch.equal(b, t)
        else:  # num_batches_tracked: a zero direction, stored as float32 like the reference's
            assert name.endswith("num_batches_tracked") and b.dtype == torch.float32 and b.item() == 0
    ignoring = projection.Flattener(named, ignore="biasbn")
    assert ignoring.size == sum(t.numel() for t in floating if t.dim() > 1)
    assert all(torch.all(b == 0) for b, (_, t) in zip(ignoring.unflatten(np.ones(ignoring.size)), named)
               if t.dim() <= 1)


def test_projector_cos_and_lstsq():
    rng = np.random.default_rng(4)
    dx, dy = rng.standard_normal(50), rng.standard_normal(50)  # not orthogonal
    point = 0.7 * dx - 1.3 * dy
    x, y = projection.Projector(dx, dy, method="lstsq")(point)
    assert (x, y) == (pytest.approx(0.7, abs=1e-12), pytest.approx(-1.3, abs=1e-12))
    cos = projection.Projector(dx, dy, method="cos")(point)
    assert cos == (pytest.approx(point @ dx / np.linalg.norm(dx)), pytest.approx(point @ dy / np.linalg.norm(dy)))
    with pytest.raises(FileFormatError, match="parallel"):
        projection.Projector(dx, 2 * dx, method="lstsq")


def test_checkpoint_epochs_end_at_the_final_model():
    assert projection.checkpoint_epochs(0, 300, 10)[-3:] == [280, 290, 300]
    assert projection.checkpoint_epochs(0, 25, 10) == [0, 10, 20, 25]  # the reference asked for 30
    with pytest.raises(UsageError):
        projection.checkpoint_epochs(5, 3, 1)


# --------------------------------------------------------------------------- checkpoints of a path
def _write_path(folder, *, epochs=range(8), dir_type="weights", seed=0):
    """Checkpoints of SmallConvNet on a path in a known plane of its ``dir_type`` tensors."""
    net = make_small_net()
    named = net_plotter.named_tensors(net, dir_type)
    final = [t.clone() for _, t in named]
    g = torch.Generator().manual_seed(seed)
    dirs = [[torch.randn(t.shape, generator=g) if t.is_floating_point() else torch.zeros_like(t)
             for t in final] for _ in range(2)]
    last = max(epochs)
    coords = {}
    for e in epochs:
        s = (last - e) / last
        a, b = -2.0 * s, 0.5 * np.sin(3 * s)
        coords[e] = (a, b)
        with torch.no_grad():
            for (_, t), f, d1, d2 in zip(named, final, *dirs):
                if t.is_floating_point():
                    t.copy_(f + a * d1 + b * d2)
                else:  # the BatchNorm step counter grows with the epochs
                    t.fill_(e * 1000)
        torch.save({"state_dict": net.state_dict(), "epoch": e, "acc": 0.0}, folder / f"model_{e}.t7")
    return coords, dirs, final


@pytest.mark.parametrize("dir_type", ["weights", "states"])
def test_pca_directions_and_projection_of_a_path(tmp_path, dir_type):
    coords, dirs, _ = _write_path(tmp_path, dir_type=dir_type)
    epochs = projection.checkpoint_epochs(0, 7, 1)
    files = projection.find_checkpoints(str(tmp_path), epochs, prefix="model_", suffix=".t7")
    net = SmallConvNet()
    trajectory = projection.Trajectory(net, files, epochs)
    dir_file = pca_dir_file(str(tmp_path), dir_type=dir_type, ignore="none", save_epoch=1)
    assert dir_file == str(tmp_path / f"PCA_{dir_type}_save_epoch=1" / "directions.h5")
    assert projection.setup_pca_directions(trajectory, dir_file=dir_file, dir_type=dir_type,
                                           ignore="none", attrs={"command": "test"}, note=lambda s: None)
    dfile = h5io.read_direction_file(dir_file)
    assert dfile.extras["explained_variance_ratio_"].sum() == pytest.approx(1.0, abs=1e-6)
    assert dfile.attrs["dir_type"] == dir_type and dfile.attrs["method"] == "pca"
    made, _ = projection.setup_projection(trajectory, dir_file=dir_file, dir_type=dir_type,
                                          method="cos", attrs={}, note=lambda s: None)
    assert made.path == dir_file + "_proj_cos.h5"
    proj = h5io.read_projection_file(made.path)
    assert np.array_equal(proj.xcoord, made.xcoord) and proj.attrs["epochs"] == made.attrs["epochs"]
    reused, _ = projection.setup_projection(trajectory, dir_file=dir_file, dir_type=dir_type,
                                            method="cos", attrs={}, note=lambda s: None)
    assert np.array_equal(reused.ycoord, made.ycoord)
    assert (proj.xcoord[-1], proj.ycoord[-1]) == (0.0, 0.0)  # the final model is the origin
    assert proj.xcoord[0] < 0 and proj.ycoord[0] < 0  # the sign convention
    assert proj.attrs["epochs"] == epochs
    # x * pc1 + y * pc2 gives back every checkpoint - final (the path lies in the PCA plane)
    flat = projection.Flattener(net_plotter.named_tensors(make_small_net(), dir_type))
    pc1, pc2 = flat.flatten(dfile.directions[0]), flat.flatten(dfile.directions[1])
    d1, d2 = flat.flatten(dirs[0]), flat.flatten(dirs[1])
    for i, e in enumerate(epochs):
        a, b = coords[e]
        moved = a * d1 + b * d2
        assert np.linalg.norm(proj.xcoord[i] * pc1 + proj.ycoord[i] * pc2 - moved) < 1e-5 * (1 + np.linalg.norm(moved))
    if dir_type == "states":  # the step counter took no part, on either side
        counters = [i for i, (n, _) in enumerate(net.state_dict().items()) if n.endswith("num_batches_tracked")]
        assert counters and all(dfile.directions[k][i] == 0 for k in (0, 1) for i in counters)


def test_ignore_biasbn_zeroes_one_dimensional_directions(tmp_path):
    _write_path(tmp_path)
    epochs = projection.checkpoint_epochs(0, 7, 1)
    files = projection.find_checkpoints(str(tmp_path), epochs, prefix="model_", suffix=".t7")
    dir_file = pca_dir_file(str(tmp_path), dir_type="weights", ignore="biasbn", save_epoch=1)
    assert "PCA_weights_ignore=biasbn_save_epoch=1" in dir_file
    projection.setup_pca_directions(projection.Trajectory(SmallConvNet(), files, epochs), dir_file=dir_file,
                                    dir_type="weights",
                                    ignore="biasbn", attrs={}, note=lambda s: None)
    dfile = h5io.read_direction_file(dir_file)
    for direction in dfile.directions:
        assert all(np.all(d == 0) for d in direction if d.ndim <= 1)
        assert any(np.any(d != 0) for d in direction if d.ndim > 1)


def test_missing_checkpoints_are_listed_in_one_line(tmp_path):
    _write_path(tmp_path, epochs=[0, 1, 2, 4, 7])
    with pytest.raises(ModelError) as err:
        projection.find_checkpoints(str(tmp_path), projection.checkpoint_epochs(0, 7, 1), prefix="model_",
                                    suffix=".t7")
    message = str(err.value)
    assert "\n" not in message
    assert "missing 3 of 8 checkpoints" in message and "model_3.t7, model_5.t7, model_6.t7" in message
    assert "epochs found there: 0, 1, 2, 4, 7" in message


def test_existing_files_are_reused_or_refused_never_overwritten(tmp_path):
    _write_path(tmp_path)
    epochs = projection.checkpoint_epochs(0, 7, 1)
    files = projection.find_checkpoints(str(tmp_path), epochs, prefix="model_", suffix=".t7")
    dir_file = pca_dir_file(str(tmp_path), dir_type="weights", ignore="none", save_epoch=1)
    kw = dict(dir_file=dir_file, dir_type="weights", ignore="none", attrs={}, note=lambda s: None)
    assert projection.setup_pca_directions(projection.Trajectory(SmallConvNet(), files, epochs), **kw)
    before = Path(dir_file).read_bytes()
    assert not projection.setup_pca_directions(projection.Trajectory(SmallConvNet(), files, epochs), **kw)  # reused
    with pytest.raises(FileFormatError, match="epochs 0, 2, 4, 6, 7"):
        sub = [0, 2, 4, 6, 7]
        projection.setup_pca_directions(projection.Trajectory(SmallConvNet(), [files[e] for e in sub], sub), **kw)
    assert Path(dir_file).read_bytes() == before


def test_the_final_checkpoint_is_read_from_disk_once(tmp_path, monkeypatch):
    _write_path(tmp_path)
    epochs = projection.checkpoint_epochs(0, 7, 1)
    files = projection.find_checkpoints(str(tmp_path), epochs, prefix="model_", suffix=".t7")
    reads = []
    real = projection.load_checkpoint_state
    monkeypatch.setattr(projection, "load_checkpoint_state", lambda path: reads.append(path) or real(path))
    trajectory = projection.Trajectory(SmallConvNet(), files, epochs)
    dir_file = pca_dir_file(str(tmp_path), dir_type="weights", ignore="none", save_epoch=1)
    projection.setup_pca_directions(trajectory, dir_file=dir_file, dir_type="weights", ignore="none",
                                    attrs={}, note=lambda s: None)
    projection.setup_projection(trajectory, dir_file=dir_file, dir_type="weights", method="cos", attrs={},
                                note=lambda s: None)
    assert reads.count(files[-1]) == 1  # the PCA and the projection each walk the path once
    assert sorted(reads[1:]) == sorted(files[:-1] * 2)


def test_checkpoint_epochs_refuse_more_than_a_run_can_save():
    assert len(projection.checkpoint_epochs(0, projection.MAX_CHECKPOINTS - 1, 1)) == projection.MAX_CHECKPOINTS
    with pytest.raises(UsageError, match="asks for 1000001 checkpoints, more than 1000000"):
        projection.checkpoint_epochs(0, projection.MAX_CHECKPOINTS, 1)


def test_projection_onto_a_one_direction_file_says_what_to_pass(tmp_path):
    _write_path(tmp_path)
    epochs = projection.checkpoint_epochs(0, 7, 1)
    files = projection.find_checkpoints(str(tmp_path), epochs, prefix="model_", suffix=".t7")
    net = make_small_net()
    x_only = str(tmp_path / "x_only.h5")
    net_plotter.save_directions(x_only, [[torch.ones_like(t) for t in net_plotter.tensors_of(net, "weights")]],
                                named=net_plotter.named_tensors(net, "weights"), attrs={})
    with pytest.raises(FileFormatError) as err:
        projection.setup_projection(projection.Trajectory(SmallConvNet(), files, epochs), dir_file=x_only,
                                    dir_type="weights", method="cos", attrs={}, note=lambda s: None)
    message = str(err.value)
    assert message.startswith(f"{x_only} holds only an x direction, but a path is projected onto two")
    assert "drop --y" not in message and "leave out --dir_file" in message
    projection.check_two_directions(str(tmp_path / "missing.h5"))  # left to load_directions to report
