"""plot_surface.py end to end: real processes, real mpirun, real HDF5 files, the digits data.

A tiny conv net (tests/data/tiny_model.py) keeps every run to a second or two of compute.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import BASE, DATA, ROOT, SLOW_MODEL, TINY_MODEL, assert_usage_error, run_cli, run_script

from loss_landscape_toolkit import _naming, h5io
from loss_landscape_toolkit.cli import plot_surface
from loss_landscape_toolkit.h5io import TRAIN


def _only_surface(folder: Path) -> h5io.SurfaceFile:
    files = [p for p in folder.iterdir() if "_[" in p.name and p.suffix == ".h5"]
    assert len(files) == 1, files
    return h5io.read_surface_file(str(files[0]))


# ------------------------------------------------------------------ results
@pytest.mark.mpi
def test_one_process_and_mpirun_give_identical_arrays(tmp_path, checkpoint):
    args = ["--model_file", checkpoint.name, "--x=-1:1:4", "--y=-1:1:3", "--eval_test"]
    (tmp_path / "serial").mkdir()
    (tmp_path / "mpi").mkdir()
    for sub in ("serial", "mpi"):
        (tmp_path / sub / checkpoint.name).write_bytes(checkpoint.read_bytes())
    run_cli(tmp_path / "serial", *args)
    proc = run_cli(tmp_path / "mpi", *args, nproc=2)
    assert "2 process(es)" in proc.stdout and "rank 1:" in proc.stdout
    serial, mpi = _only_surface(tmp_path / "serial"), _only_surface(tmp_path / "mpi")
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert serial.arrays[key].shape == (3, 4)
        np.testing.assert_array_equal(serial.arrays[key], mpi.arrays[key])
    assert serial.done_mask(TRAIN).all() and mpi.done_mask(TRAIN).all()


def test_non_square_grid_lands_where_it_belongs(tmp_path, checkpoint):
    """Z[iy, ix] equals the loss at (x[ix], y[iy]) computed independently from the files."""
    run_cli(tmp_path, "--model_file", checkpoint.name, "--x=-1:1:3", "--y=0:0.5:2")
    surface = _only_surface(tmp_path)
    dirs = h5io.read_direction_file(str(tmp_path / surface.dir_file)).directions
    import tiny_model

    from loss_landscape_toolkit import data as dataloader

    data = dataloader.load_eval_data("digits", split="train")
    net = tiny_model.tiny()
    net.load_state_dict(torch.load(checkpoint)["state_dict"])
    net.eval()
    origin = [p.detach().double().clone() for p in net.parameters()]
    assert surface.arrays["train_loss"].shape == (2, 3)
    for iy, b in enumerate(surface.ycoordinates):
        for ix, a in enumerate(surface.xcoordinates):
            with torch.no_grad():
                for p, o, dx, dy in zip(net.parameters(), origin, *dirs):
                    p.copy_(o + a * torch.from_numpy(dx).double() + b * torch.from_numpy(dy).double())
                loss = F.cross_entropy(net(data.x), data.y).item()
            assert surface.arrays["train_loss"][iy, ix] == pytest.approx(loss, rel=1e-5), (ix, iy)


def test_target_direction_interpolates_between_models(tmp_path, checkpoint):
    import tiny_model

    other = tmp_path / "model_20.t7"
    torch.manual_seed(5)
    torch.save({"state_dict": tiny_model.TinyNet().state_dict()}, other)
    proc = run_cli(tmp_path, "--model_file", checkpoint.name, "--model_file2", other.name,
                "--x=0:1:3", "--dir_type", "states")
    assert "model_10.t7_model_20.t7_states.h5 (created)" in proc.stdout
    surface = _only_surface(tmp_path)
    from loss_landscape_toolkit import data as dataloader

    data = dataloader.load_eval_data("digits", split="train")
    for path, alpha_index in ((checkpoint, 0), (other, 2)):
        net = tiny_model.TinyNet()
        net.load_state_dict(torch.load(path)["state_dict"])
        with torch.no_grad():
            loss = F.cross_entropy(net.eval()(data.x), data.y).item()
        assert surface.arrays["train_loss"][alpha_index] == pytest.approx(loss, rel=1e-5)


def test_rerun_resumes_and_adds_test_metrics(tmp_path, checkpoint):
    args = ["--model_file", checkpoint.name, "--x=-1:1:3"]
    run_cli(tmp_path, *args)
    first = _only_surface(tmp_path)
    proc = run_cli(tmp_path, *args)
    assert "resuming" in proc.stdout and "computed 0 point(s)" in proc.stdout
    proc = run_cli(tmp_path, *args, "--eval_test")
    assert "computed 3 point(s)" in proc.stdout
    second = _only_surface(tmp_path)
    np.testing.assert_array_equal(first.arrays["train_loss"], second.arrays["train_loss"])
    assert (second.arrays["test_loss"] > 0).all()
    assert "command" in second.attrs and "dir_fingerprint" in second.attrs


def test_reference_direction_file_drives_our_resnet20(tmp_path):
    """The reference's checkpoint and direction file, used as they are."""
    proc = run_script("plot_surface.py", "--model", "resnet20", "--model_file",
                      str(DATA / "reference_resnet20_model_0.t7"), "--dir_file",
                      str(DATA / "reference_resnet20_directions.h5"), "--surf_file", "s.h5",
                      "--x=-1:1:2", "--y=-1:1:2", "--dataset", "digits", "--data_split", "40",
                      "--no_progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    surface = h5io.read_surface_file(str(tmp_path / "s.h5"))
    assert surface.done_mask(TRAIN).all() and np.isfinite(surface.arrays["train_loss"]).all()


# ------------------------------------------------------------------ failures
def test_kill_9_then_rerun_gives_the_uninterrupted_result(tmp_path, checkpoint):
    """Kill -9 mid-run: the file stays readable all along, and the rerun finishes it with the
    same arrays as an uninterrupted run."""
    args = ["--model", SLOW_MODEL, "--model_file", checkpoint.name, "--x=-1:1:5", "--y=-1:1:4",
            "--surf_file", "surf.h5", "--flush_secs", "0.05"]
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / checkpoint.name).write_bytes(checkpoint.read_bytes())
    env = {"TINY_SLEEP": "0.002"}
    run_cli(clean, *args, env=env)

    cmd = [sys.executable, str(ROOT / "plot_surface.py"), *BASE, *args]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, "TINY_SLEEP": "0.01"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reads, stop = [], threading.Event()

    def reader():  # "readable at every moment": open the file as fast as possible during the run
        while not stop.is_set():
            if (tmp_path / "surf.h5").exists():
                s = h5io.read_surface_file(str(tmp_path / "surf.h5"))
                reads.append(int(s.done_mask(TRAIN).sum()) if "train_loss" in s.arrays else 0)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while (not reads or reads[-1] < 4) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        stop.set()
        thread.join()
    done_at_kill = h5io.read_surface_file(str(tmp_path / "surf.h5")).done_mask(TRAIN).sum()
    assert 4 <= done_at_kill < 20, done_at_kill
    assert len(reads) > 10
    rerun = run_cli(tmp_path, *args, env=env)
    assert f"{done_at_kill} were already done" in rerun.stdout
    resumed, uninterrupted = (h5io.read_surface_file(str(p / "surf.h5")) for p in (tmp_path, clean))
    for key in ("train_loss", "train_acc"):
        np.testing.assert_array_equal(resumed.arrays[key], uninterrupted.arrays[key])


@pytest.mark.mpi
def test_exception_on_one_rank_ends_the_job_promptly(tmp_path):
    start = time.monotonic()
    proc = run_script("plot_surface.py", *BASE, "--model", f"{DATA / 'tiny_model.py'}:failing",
                      "--x=-1:1:9", "--y=-1:1:9", cwd=tmp_path, nproc=2, timeout=90)
    assert proc.returncode != 0
    assert time.monotonic() - start < 45
    assert proc.stderr.count("injected failure on rank 1") >= 1
    assert "rank 1 of 2 failed" in proc.stderr
    surf = [p for p in tmp_path.iterdir() if "_[" in p.name and p.suffix == ".h5"]
    assert len(surf) == 1 and h5io.read_surface_file(str(surf[0]))  # still readable
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.mpi
def test_bad_input_under_mpirun_is_reported_once(tmp_path):
    proc = run_script("plot_surface.py", *BASE, "--x=-1:1", cwd=tmp_path, nproc=2)
    assert_usage_error(proc, "--x=-1:1 has 2 field(s)")


def _main(tmp_path, monkeypatch, capsys, *args):
    monkeypatch.chdir(tmp_path)
    code = plot_surface.main([*BASE, *args])
    return code, capsys.readouterr().err


def _write(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


@pytest.mark.parametrize("args, fragment", [
    (["--x=-1:1"], "expected min:max:num"),
    (["--x="], "--x is empty"),
    (["--x=-1:1:3", "--y=1:-1:3"], "min must be smaller than max"),
    (["--x=a:b:c"], "not three numbers"),
    (["--x=-1:1:3", "--loss_max", "inf", "--plot"], "--loss_max (the top of the loss axis) must be a finite"),
    (["--model", "resnet57"], "'resnet56'"),
    (["--model_file", "missing.t7"], "checkpoint not found: missing.t7"),
    (["--xnorm", "filtre"], "invalid choice: 'filtre'"),
    (["--dataset", "imagenet"], "imagenet"),
    (["--dataset", "cifar10", "--datapath", "nowhere"], "cifar-10-batches-py"),
    (["--dir_file", "missing.h5"], "does not exist"),
    (["--x=auto:1"], "auto or auto:num"),
    (["--x=auto", "--auto_rise", "0"], "--auto_rise (the loss rise that ends the basin) must be a finite number > 0"),
    (["--ngpu", "2"], "--ngpu 2 needs a GPU device (--cuda) and at least 2 visible GPUs"),
    (["--model_file", str(DATA / "reference_resnet20_surface_5x5.h5")],
     "is an HDF5 file (a surface file of this toolkit or the reference code), not a PyTorch checkpoint"),
])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, monkeypatch, capsys, args, fragment):
    code, err = _main(tmp_path, monkeypatch, capsys, *args)
    assert code == 2, err
    assert err.count("\n") == 1 and fragment in err and "Traceback" not in err, err


def test_bad_files_give_one_line_and_exit_2(tmp_path, monkeypatch, capsys, checkpoint):
    import tiny_model

    wide = tmp_path / "wide.t7"
    torch.save({"state_dict": tiny_model.tiny_wide().state_dict()}, wide)
    code, err = _main(tmp_path, monkeypatch, capsys, "--model_file", str(wide))
    assert code == 2 and "first difference at 'conv.weight'" in err and "(6, 3, 3, 3)" in err, err

    garbage = _write(tmp_path / "garbage.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    code, err = _main(tmp_path, monkeypatch, capsys, "--model_file", checkpoint.name, "--dir_file", garbage)
    assert code == 2 and "cannot open" in err, err

    code, err = _main(tmp_path, monkeypatch, capsys, "--model_file", checkpoint.name,
                      "--dir_file", str(DATA / "reference_resnet20_directions.h5"))
    assert code == 2 and "another model" in err or "tensors" in err, err

    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["weights"] = np.zeros(3)
    code, err = _main(tmp_path, monkeypatch, capsys, "--model_file", checkpoint.name,
                      "--surf_file", str(foreign))
    assert code == 2 and "not a surface file" in err, err
    assert h5py.File(foreign)["weights"].shape == (3,)  # untouched


@pytest.mark.parametrize("factory, fragments", [
    ("flat_input", ["cannot run on the digits train data: on its first 4 input(s), of shape (4, 3, 32, 32)",
                    "its forward raised RuntimeError: mat1 and mat2 shapes cannot be multiplied"]),
    ("five_classes", ["does not fit the digits train data", "(4, 3, 32, 32)", "returned a tensor of shape (4, 5)",
                      "expected floating-point logits of shape (4, 10)", "(10 classes)"]),
    ("features", ["does not fit", "(4, 3, 32, 32)", "returned a dict with keys ['features']"]),
    ("rank3", ["does not fit", "(4, 3, 32, 32)", "returned a tensor of shape (4, 10, 1)"]),
])
def test_model_that_does_not_fit_the_data_is_refused_before_the_grid(tmp_path, monkeypatch, capsys,
                                                                     factory, fragments):
    spec = f"{DATA / 'misfit_models.py'}:{factory}"
    code, err = _main(tmp_path, monkeypatch, capsys, "--model", spec, "--x=-1:1:3", "--y=-1:1:2")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"--model {spec} " in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not list(tmp_path.iterdir())  # refused before any direction or surface file


def test_model_with_nan_output_is_evaluated_not_refused(tmp_path, monkeypatch, capsys):
    code, err = _main(tmp_path, monkeypatch, capsys, "--model", f"{DATA / 'misfit_models.py'}:nan_out",
                      "--x=-1:1:2", "--surf_file", "s.h5")
    assert code == 0, err
    assert np.isnan(h5io.read_surface_file(str(tmp_path / "s.h5")).arrays["train_loss"]).all()


def test_target_model_with_the_same_weights_is_refused(tmp_path, monkeypatch, capsys, checkpoint):
    """--model_file2/3 with the centre's weights would give a zero direction (a flat plot), and
    --model_file3 with --model_file2's a y direction that repeats x."""
    import tiny_model

    (tmp_path / "copy.t7").write_bytes(checkpoint.read_bytes())
    torch.manual_seed(3)
    torch.save({"state_dict": tiny_model.TinyNet().state_dict()}, tmp_path / "other.t7")
    plane = ["--model_file2", "other.t7", "--y=-1:1:2"]
    zero, repeat = "the direction to it would be zero", "the y direction would repeat the x direction"
    for extra, fragment in [
        (["--model_file2", checkpoint.name],
         f"--model_file2 {checkpoint.name} is the same file as --model_file: {zero}"),
        (["--model_file2", "copy.t7"], f"--model_file2 copy.t7 holds the same weights as --model_file "
                                       f"{checkpoint.name}: {zero}"),
        ([*plane, "--model_file3", "copy.t7"], f"--model_file3 copy.t7 holds the same weights as --model_file "
                                               f"{checkpoint.name}: {zero}"),
        ([*plane, "--model_file3", "other.t7"], f"--model_file3 other.t7 is the same file as --model_file2: {repeat}"),
    ]:
        code, err = _main(tmp_path, monkeypatch, capsys, "--model_file", checkpoint.name, "--x=-1:1:2", *extra)
        assert code == 2 and err.count("\n") == 1 and fragment in err, (extra, err)
    assert not list(tmp_path.glob("*.h5"))  # no direction file with a zero direction


def test_resume_refuses_other_grid_or_directions(tmp_path, monkeypatch, capsys, checkpoint):
    base = ["--model_file", checkpoint.name, "--surf_file", "s.h5"]
    code, _ = _main(tmp_path, monkeypatch, capsys, *base, "--x=-1:1:3")
    assert code == 0
    before = (tmp_path / "s.h5").read_bytes()
    code, err = _main(tmp_path, monkeypatch, capsys, *base, "--x=-1:1:5")
    assert code == 2 and "other x coordinates" in err, err
    code, err = _main(tmp_path, monkeypatch, capsys, *base, "--x=-1:1:3", "--seed", "7")
    assert code == 2 and "other directions" in err, err
    code, err = _main(tmp_path, monkeypatch, capsys, *base, "--x=-1:1:3", "--x=-1:1:3", "--y=-1:1:3")
    assert code == 2 and "1D grid" in err, err
    code, err = _main(tmp_path, monkeypatch, capsys, *base, "--x=-1:1:3", "--loss_name", "mse")
    assert code == 2 and "--loss_name 'crossentropy'" in err, err
    assert (tmp_path / "s.h5").read_bytes() == before


def test_directions_of_replaced_checkpoint_are_not_reused(tmp_path, monkeypatch, capsys, checkpoint):
    import tiny_model

    code, _ = _main(tmp_path, monkeypatch, capsys, "--model_file", checkpoint.name, "--x=-1:1:3")
    assert code == 0
    dir_file = next(p for p in tmp_path.iterdir() if p.name.endswith("xnorm=filter.h5"))
    torch.manual_seed(3)  # "retrain": other weights under the same file name
    torch.save({"state_dict": tiny_model.TinyNet().state_dict()}, checkpoint)
    code, err = _main(tmp_path, monkeypatch, capsys, "--model_file", checkpoint.name, "--x=-1:1:5")
    assert code == 2 and "made for other weights" in err, err
    code, _ = _main(tmp_path, monkeypatch, capsys, "--model_file", checkpoint.name, "--x=-1:1:5",
                    "--dir_file", dir_file.name)  # explicit reuse is allowed
    assert code == 0


@pytest.mark.mpi
def test_setup_error_on_one_rank_stops_all_ranks_with_one_line(tmp_path):
    """Data that only rank 1 cannot load: rank 1 reports it once, every rank exits with 2."""
    proc = run_script("plot_surface.py", "--model", TINY_MODEL, "--dataset",
                      f"{DATA / 'rank_data.py'}:make", "--x=-1:1:3", "--no_progress",
                      cwd=tmp_path, nproc=2, timeout=90)
    assert_usage_error(proc, "(rank 1)", "no data on this node")


def test_progress_bar_shows_points_of_the_whole_grid(tmp_path, checkpoint):
    proc = run_script("plot_surface.py", *[a for a in BASE if a != "--no_progress"],
                      "--model_file", checkpoint.name, "--x=-1:1:3", "--y=-1:1:2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "loss surface" in proc.stderr and "6/6" in proc.stderr


@pytest.mark.mpi
def test_random_init_is_the_same_on_every_rank_and_rerun(tmp_path):
    """Without --model_file the model is built from --seed: all ranks agree, and a rerun with
    another number of processes resumes the same file."""
    args = ["--model", TINY_MODEL.replace(":tiny", ":unseeded"), "--x=-1:1:4", "--surf_file", "s.h5"]
    proc = run_cli(tmp_path, *args, nproc=2)
    assert "all now use rank 0's" in proc.stdout  # its own randomness: synced from rank 0
    args = ["--model", "resnet20", "--data_split", "40", "--x=-1:1:3", "--surf_file", "r.h5"]
    proc = run_cli(tmp_path, *args, nproc=2)
    assert "rank 0's" not in proc.stdout and "randomly initialised" in proc.stdout
    proc = run_cli(tmp_path, *args)
    assert "computed 0 point(s)" in proc.stdout


def test_resumes_a_surface_file_written_by_the_reference(tmp_path):
    """The reference's 5x5 file under its own names: two points marked unfinished (-1) are
    computed, the 23 others are kept as they are."""
    dir_name = "model_0.t7_weights_xignore=biasbn_xnorm=filter_yignore=biasbn_ynorm=filter.h5"
    surf_name = dir_name + "_[-1.0,1.0,5]x[-1.0,1.0,5]_datasplit=2_splitidx=0.h5"
    (tmp_path / "model_0.t7").write_bytes((DATA / "reference_resnet20_model_0.t7").read_bytes())
    (tmp_path / dir_name).write_bytes((DATA / "reference_resnet20_directions.h5").read_bytes())
    (tmp_path / surf_name).write_bytes((DATA / "reference_resnet20_surface_5x5.h5").read_bytes())
    with h5py.File(tmp_path / surf_name, "r+") as f:
        before = f["train_loss"][()]
        f["train_loss"][1, 3] = f["train_acc"][1, 3] = -1
        f["train_loss"][4, 0] = f["train_acc"][4, 0] = -1
    proc = run_script("plot_surface.py", "--model", "resnet20", "--model_file", "model_0.t7",
                      "--x=-1:1:5", "--y=-1:1:5", "--dataset", "digits", "--data_split", "2",
                      "--surf_file", surf_name, "--no_progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"direction file: {dir_name} (reused)" in proc.stdout
    assert "computed 2 point(s)" in proc.stdout and "23 were already done" in proc.stdout
    after = h5io.read_surface_file(str(tmp_path / surf_name))
    kept = np.ones((5, 5), bool)
    kept[1, 3] = kept[4, 0] = False
    np.testing.assert_array_equal(after.arrays["train_loss"][kept], before[kept])
    assert after.arrays["train_loss"][1, 3] > 0 and after.done_mask(TRAIN).all()


def test_plot_flag_draws_the_figures_and_reports_comparable_numbers(tmp_path, checkpoint):
    proc = run_cli(tmp_path, "--model_file", checkpoint.name, "--x=-1:1:4", "--y=-1:1:3",
                   "--surf_file", "s.h5", "--plot", "--format", "png")
    figures = [line.strip() for line in proc.stdout.split("figures:\n")[1].splitlines()]
    assert sorted(Path(f).name for f in figures) == sorted(
        f"s.h5_train_loss_{kind}.png" for kind in ("2dcontour", "2dcontourf", "2dheat", "3dsurface"))
    assert all(Path(tmp_path, f).stat().st_size > 1000 for f in figures)
    assert "width under centre + 0.1" in proc.stdout and "quadratic fit" in proc.stdout
    proc = run_cli(tmp_path, "--model_file", checkpoint.name, "--x=-1:1:5", "--surf_file", "l.h5",
                   "--plot", "--format", "png")
    assert "l.h5_1d_loss_acc.png" in proc.stdout and (tmp_path / "l.h5_1d_train_err.png").exists()


def test_plot_reads_the_finished_surface_file_once(tmp_path, monkeypatch, capsys, checkpoint):
    """The grid loop reads the file once to find what remains; the summary and all four figures
    of --plot share one more read."""
    reads = []
    real = h5io.read_surface_file
    monkeypatch.setattr(h5io, "read_surface_file", lambda path: reads.append(path) or real(path))
    code, err = _main(tmp_path, monkeypatch, capsys, "--model_file", checkpoint.name, "--x=-1:1:3", "--y=-1:1:3",
                      "--plot", "--format", "png", "--dpi", "40", "--surf_file", "s.h5")
    assert code == 0, err
    assert reads == ["s.h5", "s.h5"]
    assert len(list(tmp_path.glob("s.h5_train_loss_*.png"))) == 4


# ------------------------------------------------------------------ automatic ranges
def _auto_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(("automatic range", "--x=auto", "--y=auto"))]


def test_auto_range_spans_the_basin_and_a_rerun_resumes_it(tmp_path, checkpoint):
    args = ["--model_file", checkpoint.name, "--x=auto:11", "--y=auto:10"]
    proc = run_cli(tmp_path, *args)
    assert "note: --y=auto:10 asks for an even number of points; using 11 so that 0 is a grid point" in proc.stdout
    surface = _only_surface(tmp_path)
    auto, loss = surface.attrs["auto_range"], surface.arrays["train_loss"]
    assert (surface.attrs["settings"]["x"], surface.attrs["settings"]["y"]) == ("auto:11", "auto:10")
    assert loss[5, 5] == auto["centre_loss"] and auto["rise"] == max(1.0, loss[5, 5])
    threshold = loss[5, 5] + auto["rise"]
    tags = []
    for axis, coords, profile in (("x", surface.xcoordinates, loss[5, :]), ("y", surface.ycoordinates, loss[:, 5])):
        info = auto[axis]
        lo, hi = info["edges"]
        assert len(coords) == 11 and coords[5] == 0.0 and coords[0] == -coords[-1]
        assert 1.5 * max(-lo, hi) <= coords[-1] <= 1.5 * 1.25 * max(-lo, hi)
        assert profile[0] >= threshold and profile[-1] >= threshold  # the walls are in the picture
        assert (profile[np.abs(coords) < min(-lo, hi) / 2 ** (1 / 8)] < threshold).all()  # the floor too
        assert info["evaluations"] == len(info["probes"]) <= 24
        assert f"({info['evaluations']} evaluations)" in proc.stdout
        for alpha, value in info["probes"]:  # a probe on a grid point has the grid's value, bit for bit
            assert (profile[coords == alpha] == value).all()
        tags.append(_naming.format_range_tag(coords[0], coords[-1], 11))
    assert f"_{tags[0]}x{tags[1]}_" in os.path.basename(surface.path)
    again = run_cli(tmp_path, *args)
    assert "resuming" in again.stdout and "computed 0 point(s)" in again.stdout
    assert _auto_lines(again.stdout) == _auto_lines(proc.stdout)


def test_auto_rise_sets_the_edge_and_numbers_mix_with_auto(tmp_path, checkpoint):
    proc = run_cli(tmp_path, "--model_file", checkpoint.name, "--x=auto:5", "--auto_rise", "0.5", "--surf_file", "a.h5")
    assert "centre + rise 0.5)" in proc.stdout
    surface = h5io.read_surface_file(str(tmp_path / "a.h5"))
    assert surface.attrs["auto_range"]["rise"] == 0.5 and surface.ycoordinates is None
    assert surface.arrays["train_loss"][[0, -1]].min() >= surface.attrs["auto_range"]["x"]["threshold"]
    proc = run_cli(tmp_path, "--model_file", checkpoint.name, "--x=-1:1:3", "--y=auto:3", "--surf_file", "b.h5")
    surface = h5io.read_surface_file(str(tmp_path / "b.h5"))
    assert list(surface.xcoordinates) == [-1, 0, 1] and "x" not in surface.attrs["auto_range"]
    assert surface.ycoordinates[1] == 0.0 and "--y=auto:3" in proc.stdout and "--x=auto" not in proc.stdout


@pytest.mark.mpi
def test_auto_range_under_mpirun_is_the_same_on_every_rank(tmp_path, checkpoint):
    """Rank 0 probes and shares the range: the MPI surface is the one-process surface."""
    for sub in ("serial", "mpi"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / checkpoint.name).write_bytes(checkpoint.read_bytes())
    args = ["--model_file", checkpoint.name, "--x=auto:7", "--y=auto:5"]
    serial = run_cli(tmp_path / "serial", *args)
    mpi = run_cli(tmp_path / "mpi", *args, nproc=2)
    assert "2 process(es)" in mpi.stdout and "rank 1:" in mpi.stdout
    assert mpi.stdout.count("automatic range:") == 1 and _auto_lines(mpi.stdout) == _auto_lines(serial.stdout)
    one, two = _only_surface(tmp_path / "serial"), _only_surface(tmp_path / "mpi")
    assert os.path.basename(one.path) == os.path.basename(two.path)
    np.testing.assert_array_equal(one.arrays["train_loss"], two.arrays["train_loss"])
    assert two.done_mask(TRAIN).all()
