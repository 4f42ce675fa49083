"""plot_trajectory.py, and the paper's Figure-10 workflow: train -> PCA path -> contours with the path.

The figures come from plotting.plot_trajectory; the end-to-end test also needs plot_surface.py.
"""
from __future__ import annotations

import importlib.util
import json
import shlex

import h5py
import matplotlib.image
import numpy as np
import pytest
import torch
from conftest import DATA, TINY_MODEL, assert_usage_error, run_script

from loss_landscape_toolkit import directions as net_plotter
from loss_landscape_toolkit.cli import args as cli_args
from loss_landscape_toolkit.cli import plot_trajectory

PCA_FOLDER = "PCA_weights_save_epoch=1"


def _tiny_module():
    spec = importlib.util.spec_from_file_location("tiny_model_for_trajectory", DATA / "tiny_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_run(folder, epochs=range(7)):
    """Checkpoints model_{e}.t7 of TinyNet along a curved path (as cifar10/main.py writes them)."""
    folder.mkdir(parents=True, exist_ok=True)
    net = _tiny_module().tiny()
    final = {k: v.clone() for k, v in net.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    d1 = {k: torch.randn(v.shape, generator=g) for k, v in final.items() if v.is_floating_point()}
    d2 = {k: torch.randn(v.shape, generator=g) for k, v in final.items() if v.is_floating_point()}
    last = max(epochs)
    for e in epochs:
        s = (last - e) / last
        state = {k: (v + 0.5 * s * d1[k] + 0.2 * np.sin(3 * s) * d2[k]) if k in d1 else v + e
                 for k, v in final.items()}
        torch.save({"state_dict": state, "epoch": e, "acc": 10.0}, folder / f"model_{e}.t7")


@pytest.fixture
def main_in(tmp_path, monkeypatch, capsys):
    """plot_trajectory.main(argv) in this process, from ``tmp_path``: (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)

    def run(*argv: str):
        code = plot_trajectory.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _image_has_content(path) -> bool:
    pixels = matplotlib.image.imread(str(path))
    return pixels.ndim == 3 and float(pixels[..., :3].std()) > 0.01


def test_files_and_layout_are_the_references(tmp_path, main_in):
    _write_run(tmp_path / "run")
    code, out, err = main_in("--model", TINY_MODEL, "--model_folder", "run", "--max_epoch", "6",
                             "--format", "png", "--dpi", "40")
    assert code == 0, err
    pca = tmp_path / "run" / PCA_FOLDER
    assert sorted(p.name for p in pca.iterdir()) == [
        "directions.h5", "directions.h5_proj_cos.h5", "directions.h5_proj_cos.h5.png"]
    with h5py.File(pca / "directions.h5", "r") as f:
        for group in ("xdirection", "ydirection"):
            assert sorted(f[group].keys(), key=int) == [str(i) for i in range(5)]  # TinyNet's 5 parameters
        for key in ("explained_variance_ratio_", "singular_values_", "explained_variance_"):
            assert f[key].shape == (2,) and f[key].dtype == np.float64
        ratio = f["explained_variance_ratio_"][()]
        assert f.attrs["dir_type"] == "weights" and f.attrs["method"] == "pca"
        assert json.loads(f.attrs["epochs"]) == list(range(7))
        assert f.attrs["command"] and f.attrs["model_folder"] == "run"
    assert 0 < ratio[1] < ratio[0] and ratio.sum() == pytest.approx(1.0, abs=1e-6)
    with h5py.File(pca / "directions.h5_proj_cos.h5", "r") as f:
        x, y = f["proj_xcoord"][()], f["proj_ycoord"][()]
        attrs = dict(f.attrs)
    assert x.dtype == np.float64 and x.shape == y.shape == (7,)
    assert (x[-1], y[-1]) == (0.0, 0.0)
    assert json.loads(attrs["epochs"]) == list(range(7))
    assert attrs["method"] == "cos" and attrs["model_folder"] == "run" and attrs["prefix"] == "model_"
    assert attrs["suffix"] == ".t7" and attrs["dir_file"] == str(pca.relative_to(tmp_path) / "directions.h5")
    assert _image_has_content(pca / "directions.h5_proj_cos.h5.png")
    assert f"trajectory figure: {pca.relative_to(tmp_path)}/directions.h5_proj_cos.h5.png" in out

    # the same command again reuses both files; other settings get their own files
    code, out, _ = main_in("--model", TINY_MODEL, "--model_folder", "run", "--max_epoch", "6",
                           "--format", "png", "--dpi", "40")
    assert code == 0 and "reusing" in out and "projection: reusing" in out
    code, _, err = main_in("--model", TINY_MODEL, "--model_folder", "run", "--max_epoch", "6",
                           "--ignore", "biasbn", "--proj_method", "lstsq", "--format", "png", "--dpi", "40")
    assert code == 0, err
    lstsq = tmp_path / "run" / "PCA_weights_ignore=biasbn_save_epoch=1" / "directions.h5_proj_lstsq.h5"
    with h5py.File(lstsq, "r") as f:
        assert (f["proj_xcoord"][-1], f["proj_ycoord"][-1]) == (0.0, 0.0)


def _zero_is_a_grid_point(text: str) -> bool:
    """Whether the range ``min:max:num`` has 0 as one of its points (not only between two)."""
    vmin, vmax, num = (float(v) for v in text.split(":"))
    index = -vmin / (vmax - vmin) * (num - 1)
    coords = np.linspace(vmin, vmax, int(num))
    return num == int(num) and abs(index - round(index)) < 1e-9 and abs(coords[round(index)]) < 1e-12 * (vmax - vmin)


def test_suggested_ranges_cover_the_path_with_the_final_model_on_the_grid(tmp_path, main_in):
    _write_run(tmp_path / "run")
    code, out, err = main_in("--model", TINY_MODEL, "--model_folder", "run", "--max_epoch", "6",
                             "--format", "png", "--dpi", "40")
    assert code == 0, err
    suggested = shlex.split(out.strip().splitlines()[-1])
    with h5py.File(tmp_path / "run" / PCA_FOLDER / "directions.h5_proj_cos.h5", "r") as f:
        path = {"--x=": f["proj_xcoord"][()], "--y=": f["proj_ycoord"][()]}
    for prefix, coords in path.items():
        text = next(a for a in suggested if a.startswith(prefix))[len(prefix):]
        vmin, vmax, num = (float(v) for v in text.split(":"))
        assert _zero_is_a_grid_point(text), text
        assert vmin < coords.min() and coords.max() < vmax and 15 <= num <= 23
        assert 0.0 in cli_args.parse_range(text, prefix[:-1]).coordinates()  # what plot_surface.py will use


@pytest.mark.parametrize("seed", range(40))
def test_suggested_ranges_of_any_path_have_zero_as_a_grid_point(seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=6) * 10.0 ** rng.uniform(-4, 3) + rng.normal() * 10.0 ** rng.uniform(-4, 3)
    for path in (values, np.zeros(3), np.abs(values), -np.abs(values)):
        text = plot_trajectory.grid_range(path)
        vmin, vmax, _ = (float(v) for v in text.split(":"))
        assert _zero_is_a_grid_point(text), text
        assert vmin <= min(path.min(), 0.0) and max(path.max(), 0.0) <= vmax


def test_states_and_an_existing_direction_file(tmp_path, main_in):
    _write_run(tmp_path / "run")
    code, _, err = main_in("--model", TINY_MODEL, "--model_folder", "run", "--max_epoch", "6",
                           "--dir_type", "states", "--format", "png", "--dpi", "40")
    assert code == 0, err
    with h5py.File(tmp_path / "run" / "PCA_states_save_epoch=1" / "directions.h5", "r") as f:
        # conv, bn (weight, bias, running_mean, running_var, num_batches_tracked), fc (weight, bias)
        assert len(f["xdirection"]) == 8 and f["xdirection/5"].shape == () and f["xdirection/5"][()] == 0

    # project onto random directions instead (no PCA): made by plot_surface's machinery
    net = _tiny_module().tiny()
    gen = torch.Generator().manual_seed(3)
    dirs = [net_plotter.create_random_direction(net_plotter.tensors_of(net, "weights"), norm="filter",
                                                ignore="biasbn", generator=gen) for _ in range(2)]
    net_plotter.save_directions(str(tmp_path / "random.h5"), dirs, attrs={"dir_type": "weights"},
                                named=net_plotter.named_tensors(net, "weights"))
    code, _, err = main_in("--model", TINY_MODEL, "--model_folder", "run", "--max_epoch", "6",
                           "--dir_file", "random.h5", "--proj_method", "lstsq", "--format", "png", "--dpi", "40")
    assert code == 0, err
    assert (tmp_path / "random.h5_proj_lstsq.h5").is_file() and (tmp_path / "random.h5_proj_lstsq.h5.png").is_file()
    assert not (tmp_path / "run" / PCA_FOLDER).exists()


@pytest.mark.parametrize("args, fragments", [
    ([], ["--model_folder is required"]),
    (["--model_folder", "nowhere"], ["--model_folder 'nowhere' is not a folder"]),
    (["--model_folder", "run", "--max_epoch", "6", "--start_epoch", "7"], ["--start_epoch 7 --max_epoch 6"]),
    (["--model_folder", "run", "--max_epoch", "6", "--model", "resnet20"], ["does not fit the model"]),
    (["--model_folder", "run", "--max_epoch", "6", "--dir_file", "run/model_0.t7"], ["model_0.t7"]),
    (["--model_folder", "run", "--max_epoch", "6", "--format", "gif"], ["invalid choice"]),
])
def test_bad_input_is_one_line(tmp_path, main_in, args, fragments):
    _write_run(tmp_path / "run")
    code, _, err = main_in("--model", TINY_MODEL, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err


def test_missing_checkpoints_listed_at_once(tmp_path):
    _write_run(tmp_path / "run", epochs=[0, 2, 3, 5, 9])
    proc = run_script("plot_trajectory.py", "--model", TINY_MODEL, "--model_folder", "run",
                      "--max_epoch", "9", cwd=tmp_path)
    assert_usage_error(proc, "missing 5 of 10 checkpoints in run: model_1.t7, model_4.t7, model_6.t7, "
                             "model_7.t7, model_8.t7", "epochs found there: 0, 2, 3, 5, 9")


def test_paper_workflow_train_trajectory_contours(tmp_path):
    """Figure 10 end to end, each step a real process started from a folder outside the project."""
    train = run_script("cifar10/main.py", "--model", TINY_MODEL, "--dataset", "digits", "--epochs", "4",
                       "--save_epoch", "1", "--lr", "0.05", "--channels_last", cwd=tmp_path, timeout=300)
    assert train.returncode == 0, train.stderr
    (run,) = (tmp_path / "trained_nets").iterdir()
    folder = str(run.relative_to(tmp_path))
    traj = run_script("plot_trajectory.py", "--model", TINY_MODEL, "--model_folder", folder, "--max_epoch", "4",
                      "--dataset", "digits", "--format", "png", "--dpi", "40", cwd=tmp_path, timeout=300)
    assert traj.returncode == 0, traj.stderr
    pca = run / PCA_FOLDER
    assert _image_has_content(pca / "directions.h5_proj_cos.h5.png")
    # the printed next step, on a coarse grid and a quarter of the data to stay fast
    suggested = shlex.split(traj.stdout.strip().splitlines()[-1])
    assert suggested[:2] == ["python", "plot_surface.py"] and "--plot" in suggested
    args = [a for a in suggested[2:] if not a.startswith(("--x=", "--y="))]
    xr, yr = (next(a for a in suggested if a.startswith(p)) for p in ("--x=", "--y="))
    lo_x, hi_x, _ = xr[4:].split(":")
    lo_y, hi_y, _ = yr[4:].split(":")
    assert float(lo_x) < 0 < float(hi_x)
    surf = run_script("plot_surface.py", *args, f"--x={lo_x}:{hi_x}:3", f"--y={lo_y}:{hi_y}:3",
                      "--data_split", "4", "--no_progress", cwd=tmp_path, timeout=300)
    assert surf.returncode == 0, surf.stderr
    surfaces = list(pca.glob("directions.h5_[[]*]x[[]*]_datasplit=4_splitidx=0_dataset=digits.h5"))
    assert len(surfaces) == 1


def test_a_one_direction_file_names_what_this_program_can_do(tmp_path, main_in):
    _write_run(tmp_path / "run")
    net = _tiny_module().tiny()
    x_dir = net_plotter.create_random_direction(net_plotter.tensors_of(net, "weights"), norm="filter",
                                                ignore="biasbn", generator=torch.Generator().manual_seed(3))
    net_plotter.save_directions(str(tmp_path / "x_only.h5"), [x_dir], attrs={"dir_type": "weights"},
                                named=net_plotter.named_tensors(net, "weights"))
    code, _, err = main_in("--model", TINY_MODEL, "--model_folder", "run", "--max_epoch", "6",
                           "--dir_file", "x_only.h5", "--format", "png", "--dpi", "40")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "x_only.h5 holds only an x direction, but a path is projected onto two (x and y)" in err
    assert "leave out --dir_file to compute PCA directions" in err
    assert "drop --y" not in err  # plot_trajectory.py has no --y
    assert not list(tmp_path.glob("x_only.h5_proj_*"))


@pytest.mark.parametrize("args, fragment", [
    (["--max_epoch", "100000000000"], "--start_epoch 0 --max_epoch 100000000000 --save_epoch 1 asks for "
                                      "100000000001 checkpoints, more than 1000000; check --max_epoch"),
    (["--max_epoch", "6", "--dpi", "100000"], "--dpi must be between 1 and 4800"),
])
def test_nonsensical_numbers_are_refused_before_reading_checkpoints(tmp_path, main_in, args, fragment):
    _write_run(tmp_path / "run")
    code, _, err = main_in("--model", TINY_MODEL, "--model_folder", "run", *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err
    assert not (tmp_path / "run" / PCA_FOLDER).exists()
