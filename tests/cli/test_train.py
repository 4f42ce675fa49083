"""cifar10/main.py (cli/train.py): the training program, in real processes and in process."""
from __future__ import annotations

import errno
import importlib.util
import io
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import DATA, LOG_LINE, ROOT, TINY_MODEL, assert_usage_error, run_script

from loss_landscape_toolkit import data as dataloader
from loss_landscape_toolkit import training
from loss_landscape_toolkit.models import create_model

MAIN = "cifar10/main.py"
TINY_RUN = "tiny_model.py-tiny_sgd_lr=0.1_bs=128_wd=0.0005_mom=0.9_save_epoch=2_dataset=digits"


# --------------------------------------------------------------------------- the CLI
TINY_ARGS = ("--model", TINY_MODEL, "--dataset", "digits", "--save_epoch", "2")


def _train(tmp_path: Path, *args: str, timeout: float = 240):
    """The real script in a subprocess, run from ``tmp_path`` (not the project folder)."""
    return run_script(MAIN, *TINY_ARGS, *args, cwd=tmp_path, timeout=timeout)


def _load_main():
    spec = importlib.util.spec_from_file_location("cifar10_main_under_test", ROOT / MAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def main_in(tmp_path, monkeypatch, capsys):
    """``main(argv)`` of cifar10/main.py in this process (no import cost), run from ``tmp_path``;
    returns (exit code, stdout, stderr)."""
    main = _load_main().main
    monkeypatch.chdir(tmp_path)

    def run(*argv: str):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _one_line_error(result, *fragments: str) -> None:
    code, _, err = result
    assert code == 2 and len(err.strip().splitlines()) == 1, (code, err)
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_cli_two_epochs_write_the_reference_files_from_any_folder(tmp_path, main_in):
    proc = _train(tmp_path, "--epochs", "3")
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "trained_nets" / TINY_RUN  # relative to where it ran
    assert str(Path("trained_nets") / TINY_RUN) in proc.stdout
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["log.out", "model_0.t7", "model_1.t7", "model_2.t7",
                     "opt_state_0.t7", "opt_state_1.t7", "opt_state_2.t7"]  # 3 is no save epoch
    log = (folder / "log.out").read_text().splitlines(keepends=False)
    matches = [LOG_LINE.match(line) for line in log]
    assert all(matches) and [int(m.group(1)) for m in matches] == [0, 1, 2, 3]
    spec = importlib.util.spec_from_file_location("tiny_model_for_test", DATA / "tiny_model.py")
    tiny_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny_model)
    for epoch in (0, 1, 2):
        ckpt = torch.load(folder / f"model_{epoch}.t7", weights_only=True)
        assert set(ckpt) == {"state_dict", "acc", "epoch"} and ckpt["epoch"] == epoch
        assert ckpt["acc"] == pytest.approx(100 - float(matches[epoch].group(2)), abs=1e-3)
        tiny_model.TinyNet().load_state_dict(ckpt["state_dict"])
        opt = torch.load(folder / f"opt_state_{epoch}.t7", weights_only=True)
        assert set(opt) == {"optimizer", "epoch"} and opt["epoch"] == epoch  # the reference's key + epoch
        assert len(opt["optimizer"]["param_groups"]) == 1
    momentum = torch.load(folder / "opt_state_2.t7", weights_only=True)["optimizer"]["state"]
    assert len(momentum) == 5 and all("momentum_buffer" in s for s in momentum.values())

    # the same command again would overwrite that run: refused, with the way to resume it
    again = main_in(*TINY_ARGS, "--epochs", "3")
    _one_line_error(again, "already holds model_0.t7", "--resume_model", "model_2.t7")

    # resume from epoch 2: epoch 3 only, appended to the log
    resumed = _train(tmp_path, "--epochs", "4", "--resume_model", str(folder / "model_2.t7"),
                     "--resume_opt", str(folder / "opt_state_2.t7"))
    assert resumed.returncode == 0, resumed.stderr
    log = (folder / "log.out").read_text().splitlines()
    assert [line.split()[1] for line in log] == ["0", "1", "2", "3", "3", "4"]
    assert (folder / "model_4.t7").exists() and not (folder / "model_3.t7").exists()


def test_cli_label_corruption_and_pickled_loaders(tmp_path, main_in):
    code, out, err = main_in(*TINY_ARGS, "--epochs", "1", "--label_corrupt_prob", "0.5", "--noaug")
    assert code == 0, err
    folder = tmp_path / "trained_nets" / TINY_RUN.replace("save_epoch=2", "save_epoch=2_noaug_randlabel=0.5")
    assert "labels of 718 of 1437 examples redrawn" in out  # round(0.5 * 1437) = 718
    true = dataloader.load_eval_data("digits", split="train")
    trained_on = dataloader.load_pickled_loader(str(folder / "trainloader.dat"))
    assert torch.equal(trained_on.x, true.x)  # normalized, not augmented
    changed = float((trained_on.y != true.y).float().mean())
    assert abs(changed - 0.5 * 0.9) < 0.04
    test = dataloader.load_pickled_loader(str(folder / "testloader.dat"))
    assert torch.equal(test.y, dataloader.load_eval_data("digits", split="test").y)


@pytest.mark.parametrize("args, fragments", [
    (["--label_corrupt_prob", "1.5"], ["--label_corrupt_prob must be in [0, 1]"]),
    (["--model", "resnet2O"], ["unknown model name", "resnet20"]),
    (["--resume_model", "nowhere/model_3.t7"], ["--resume_model nowhere/model_3.t7: file not found"]),
    (["--resume_opt", "opt_state_3.t7"], ["--resume_opt needs --resume_model"]),
    (["--optimizer", "rmsprop"], ["invalid choice"]),
    (["--dataset", "imagenet"], ["imagenet", "not supported"]),
])
def test_cli_bad_input_is_one_line(tmp_path, main_in, args, fragments):
    _one_line_error(main_in("--dataset", "digits", "--epochs", "1", *args), *fragments)
    assert not (tmp_path / "trained_nets").exists()  # refused before anything was written


def test_cli_bad_input_in_a_real_process(tmp_path):
    proc = run_script(MAIN, "--dataset", "digits", "--label_corrupt_prob", "-0.1", cwd=tmp_path)
    assert_usage_error(proc, "--label_corrupt_prob must be in [0, 1], got -0.1")


def test_cli_resume_with_wrong_model_is_one_line(tmp_path, main_in):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    torch.save({"state_dict": create_model("resnet20").state_dict(), "epoch": 5, "acc": 10.0},
               folder / "model_5.t7")
    _one_line_error(main_in(*TINY_ARGS, "--epochs", "6", "--resume_model", str(folder / "model_5.t7")),
                    "does not fit the model")



# --------------------------------------------------------------------------- interrupted saves and resume pairs
def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["state_dict"]


def test_cli_save_cut_short_resumes_from_the_latest_complete_pair(tmp_path, main_in):
    # an uninterrupted run to epoch 4 (pairs 0, 1, 2, 4), then the same run killed between the
    # two writes of epoch 4: the optimizer state is written first, so model_4.t7 is missing
    code, _, err = main_in(*TINY_ARGS, "--epochs", "4", "--save", "straight")
    assert code == 0, err
    code, _, err = main_in(*TINY_ARGS, "--epochs", "4")
    assert code == 0, err
    folder = tmp_path / "trained_nets" / TINY_RUN
    (folder / "model_4.t7").unlink()

    again = main_in(*TINY_ARGS, "--epochs", "4")  # refused, with the command that resumes it
    _one_line_error(again, "latest complete pair, epoch 2", "opt_state_4.t7 has no partner")
    flags = re.search(r"(--resume_model \S+) (--resume_opt \S+),", again[2])
    assert flags.group(1).endswith("model_2.t7") and flags.group(2).endswith("opt_state_2.t7")
    code, out, err = main_in(*TINY_ARGS, "--epochs", "4", *flags.group(1).split(), *flags.group(2).split())
    assert code == 0, err
    assert "note: replacing" in out and "opt_state_4.t7" in out
    straight = tmp_path / "straight" / TINY_RUN
    for name in ("model_4.t7", "opt_state_4.t7"):
        assert (folder / name).exists()
    for a, b in zip(_weights(straight / "model_4.t7").values(), _weights(folder / "model_4.t7").values()):
        assert torch.equal(a, b)  # the same run as if never stopped


def test_cli_missing_half_of_a_pair_names_the_latest_complete_pair(tmp_path, main_in):
    code, _, err = main_in(*TINY_ARGS, "--epochs", "2")
    assert code == 0, err
    folder = tmp_path / "trained_nets" / TINY_RUN
    (folder / "opt_state_2.t7").unlink()  # as left by a kill after the model (older versions)
    refused = main_in(*TINY_ARGS, "--epochs", "3", "--resume_model", str(folder / "model_2.t7"),
                      "--resume_opt", str(folder / "opt_state_2.t7"))
    _one_line_error(refused, "opt_state_2.t7: file not found", "latest epoch with both files",
                    f"--resume_model {folder / 'model_1.t7'} --resume_opt {folder / 'opt_state_1.t7'}")
    code, _, err = main_in(*TINY_ARGS, "--epochs", "3", "--resume_model", str(folder / "model_1.t7"),
                           "--resume_opt", str(folder / "opt_state_1.t7"))
    assert code == 0, err  # the lone model_2.t7 of the cut save is replaced
    assert (folder / "opt_state_2.t7").exists()


def test_cli_resume_pair_from_two_epochs_is_refused(tmp_path, main_in):
    code, _, err = main_in(*TINY_ARGS, "--epochs", "2", "--save", "runs")
    assert code == 0, err
    folder = tmp_path / "runs" / TINY_RUN
    shutil.copy(folder / "opt_state_1.t7", tmp_path / "momentum.t7")  # its name says no epoch
    for opt_file in (folder / "opt_state_1.t7", tmp_path / "momentum.t7"):
        refused = main_in(*TINY_ARGS, "--epochs", "3", "--resume_model", str(folder / "model_2.t7"),
                          "--resume_opt", str(opt_file))
        _one_line_error(refused, "optimizer state of epoch 1", "--resume_model is at epoch 2")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [TINY_RUN]
    assert not (folder / "model_3.t7").exists() and "e: 3" not in (folder / "log.out").read_text()


# --------------------------------------------------------------------------- files the OS refuses to write
@pytest.mark.parametrize("where, reason", [
    ("a_file", "Not a directory"),  # --save is a regular file
    ("a_file/below", "Not a directory"),  # --save is inside a regular file
    ("x" * 300, "File name too long"),
])
def test_cli_unwritable_save_folder_is_one_line(tmp_path, main_in, where, reason):
    (tmp_path / "a_file").write_text("keep me\n")
    refused = main_in(*TINY_ARGS, "--epochs", "1", "--save", where)
    _one_line_error(refused, f"cannot write {os.path.join(where, TINY_RUN)}", reason)
    assert (tmp_path / "a_file").read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_cli_read_only_run_folder_is_one_line(tmp_path, main_in):
    code, _, err = main_in(*TINY_ARGS, "--epochs", "1")
    assert code == 0, err
    folder = tmp_path / "trained_nets" / TINY_RUN
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    folder.chmod(0o555)
    try:
        refused = main_in(*TINY_ARGS, "--epochs", "2", "--resume_model", str(folder / "model_1.t7"),
                          "--resume_opt", str(folder / "opt_state_1.t7"))
    finally:
        folder.chmod(0o755)
    _one_line_error(refused, "Permission denied", str(Path("trained_nets") / TINY_RUN))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


class _FullDisk:
    """A file whose writes fail as on a full disk, after storing a few bytes."""

    def __init__(self, path: str, mode: str):
        self._fh = io.FileIO(path, mode)

    def write(self, data) -> int:
        self._fh.write(bytes(data)[:7])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def test_cli_full_disk_while_saving_is_one_line_and_keeps_the_files(tmp_path, main_in, monkeypatch):
    code, _, err = main_in(*TINY_ARGS, "--epochs", "2")
    assert code == 0, err
    folder = tmp_path / "trained_nets" / TINY_RUN
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "log.out"}
    monkeypatch.setattr(training, "open", _FullDisk, raising=False)
    refused = main_in(*TINY_ARGS, "--epochs", "4", "--resume_model", str(folder / "model_2.t7"),
                      "--resume_opt", str(folder / "opt_state_2.t7"))
    _one_line_error(refused, f"cannot write {Path('trained_nets') / TINY_RUN / 'opt_state_4.t7'}",
                    "No space left on device")
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "log.out"} == before
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file left
