"""The training recipe (training.py) and its CLI (cifar10/main.py), on tiny models and real digits."""
from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from loss_landscape_toolkit import data as dataloader
from loss_landscape_toolkit import training
from loss_landscape_toolkit.errors import ModelError
from conftest import DATA, ROOT, TINY_MODEL, SmallConvNet, assert_usage_error, run_script
from dataloader_helpers import write_cifar
from loss_landscape_toolkit.models import create_model

MAIN = "cifar10/main.py"
LOG_LINE = re.compile(r"^e: (\d+) loss: \d+\.\d{5} train_err: \d+\.\d{3} test_top1: (\d+\.\d{3}) "
                      r"test_loss \d+\.\d{5} $")
TINY_RUN = "tiny_model.py-tiny_sgd_lr=0.1_bs=128_wd=0.0005_mom=0.9_save_epoch=2_dataset=digits"


# --------------------------------------------------------------------------- recipe pieces
def test_save_folder_name_follows_the_reference():
    common = dict(optimizer="sgd", lr=0.1, lr_decay=0.1, batch_size=128, weight_decay=0.0005,
                  momentum=0.9, save_epoch=10)
    assert training.save_folder_name(model="resnet56", **common) == \
        "resnet56_sgd_lr=0.1_bs=128_wd=0.0005_mom=0.9_save_epoch=10"
    full = training.save_folder_name(
        model="vgg9", **{**common, "optimizer": "adam", "lr": 0.001, "lr_decay": 0.2, "weight_decay": 0.0},
        loss_name="mse", noaug=True, raw_data=True, label_corrupt_prob=0.5, ngpu=2, idx=3)
    assert full == ("vgg9_adam_lr=0.001_lr_decay=0.2_bs=128_wd=0.0_mom=0.9_save_epoch=10_loss=mse"
                    "_noaug_rawdata_randlabel=0.5_ngpu=2_idx=3")
    custom = training.save_folder_name(model="nets/my.py:build", dataset="data/d.py:load", **common)
    assert custom == "my.py-build_sgd_lr=0.1_bs=128_wd=0.0005_mom=0.9_save_epoch=10_dataset=d.py-load"
    assert "/" not in custom


def test_save_epochs_and_schedule_follow_the_reference_loop():
    # the reference: save at 0, 1, multiples of save_epoch and 150; multiply lr by lr_decay after
    # training epochs 150, 225 and 275
    lr, expected_lr, saved = 0.1, {}, []
    for epoch in range(1, 301):
        expected_lr[epoch] = lr
        if epoch in (150, 225, 275):
            lr *= 0.1
    assert all(math.isclose(training.lr_at_epoch(e, lr=0.1, lr_decay=0.1), expected_lr[e], rel_tol=1e-12)
               for e in range(1, 301))
    saved = training.planned_checkpoints(0, 300, 40)
    assert saved == [0, 1, 40, 80, 120, 150, 160, 200, 240, 280]
    assert training.planned_checkpoints(51, 60, 10) == [60]


def test_reference_initialisation():
    torch.manual_seed(0)
    net = create_model("resnet20")
    training.init_params(net)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    fc = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][0]
    big = max(convs, key=lambda m: m.weight.numel())
    fan_in = big.weight[0].numel()
    assert big.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in bns)
    assert fc.weight.std().item() == pytest.approx(1e-3, rel=0.1) and torch.all(fc.bias == 0)


def _crop_flip_candidates(image: torch.Tensor, padding: int):
    padded = F.pad(image, (padding,) * 4)
    h, w = image.shape[1:]
    for top, left, flip in itertools.product(range(2 * padding + 1), range(2 * padding + 1), (False, True)):
        crop = padded[:, top:top + h, left:left + w]
        yield (top, left, flip), (crop.flip(-1) if flip else crop)


def test_random_crop_flip_is_a_crop_and_flip_of_each_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(400, 3, 6, 5, generator=g) + 0.5  # no zeros: the black border is recognisable
    out = training.random_crop_flip(x, generator=torch.Generator().manual_seed(1), padding=2)
    assert out.shape == x.shape
    seen = []
    for image, result in zip(x, out):
        matches = [key for key, cand in _crop_flip_candidates(image, 2) if torch.equal(cand, result)]
        assert len(matches) == 1
        seen.append(matches[0])
    tops = np.bincount([k[0] for k in seen], minlength=5)
    flips = sum(k[2] for k in seen)
    assert tops.min() > 40 and 150 < flips < 250  # every offset, and flips about half the time


def test_corrupt_labels_redraws_exactly_that_fraction_uniformly():
    labels = torch.arange(10).repeat(500)  # 5,000 labels
    new, redrawn = training.corrupt_labels(labels, prob=0.3, num_classes=10, seed=7)
    assert int(redrawn.sum()) == 1500
    assert torch.equal(new[~redrawn], labels[~redrawn])
    changed = int((new != labels).sum())
    assert abs(changed - 1500 * 0.9) < 5 * math.sqrt(1500 * 0.9 * 0.1)  # uniform over ALL classes
    counts = np.bincount(new[redrawn].numpy(), minlength=10)
    assert counts.min() > 100  # each class about 150 times
    again, _ = training.corrupt_labels(labels, prob=0.3, num_classes=10, seed=7)
    other, _ = training.corrupt_labels(labels, prob=0.3, num_classes=10, seed=8)
    assert torch.equal(again, new) and not torch.equal(other, new)
    assert torch.equal(training.corrupt_labels(labels, prob=0.0, num_classes=10, seed=7)[0], labels)


def test_training_data_normalizes_exactly_like_eval_data(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    for dataset in ("digits", "cifar10"):
        train = dataloader.load_training_data(dataset, datapath=str(tmp_path))
        reference = dataloader.load_eval_data(dataset, split="train", datapath=str(tmp_path))
        assert train.mean is not None
        assert torch.equal(dataloader.normalize_(train.x.clone(), train.mean, train.std), reference.x)
        assert torch.equal(train.y, reference.y)
        raw = dataloader.load_training_data(dataset, datapath=str(tmp_path), raw_data=True)
        assert raw.mean is None and torch.equal(raw.x, train.x)


# --------------------------------------------------------------------------- the loop, in process
def _tiny_setup(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(70, 3, 8, 8, generator=g)
    y = torch.randint(0, 3, (70,), generator=g)
    data = dataloader.TrainingData(x=x, y=y, mean=torch.full((3,), 0.5), std=torch.full((3,), 0.25),
                                   num_classes=3, description="synthetic")
    test = dataloader.EvalData(x=(x[:20] - 0.5) / 0.25, y=y[:20], num_classes=3, description="synthetic")
    return data, test


def _net():
    torch.manual_seed(0)
    return SmallConvNet(num_classes=3)


def _run(folder, start_epoch, epochs, recipe, *, net=None, resume_from=None, with_opt=True):
    data, test = _tiny_setup()
    net = net if net is not None else _net()
    opt = training.make_optimizer(net.parameters(), name="sgd", lr=recipe.lr, momentum=0.9, weight_decay=5e-4)
    if resume_from is not None:
        model_file, opt_file = (str(resume_from / n) for n in training.checkpoint_names(start_epoch - 1))
        assert training.resume_model(net, model_file) == start_epoch
        if with_opt:
            training.resume_optimizer(opt, opt_file)
    lines = []
    recipe = dataclasses.replace(recipe, epochs=epochs)
    training.train(net, opt, data=data, test=test, recipe=recipe, folder=str(folder),
                   start_epoch=start_epoch, device=torch.device("cpu"), log=lines.append)
    return net, opt, lines


def test_resume_continues_exactly_with_optimizer_state_and_decayed_lr(tmp_path):
    # decay after epoch 2: the resumed epoch 3 must use lr * 0.1, not the lr stored at epoch 2
    recipe = training.Recipe(epochs=4, batch_size=16, lr=0.1, lr_decay=0.1, save_epoch=1,
                             decay_epochs=(2,), seed=5)
    for name in "abc":
        (tmp_path / name).mkdir()
    straight, opt, lines = _run(tmp_path / "a", 0, 4, recipe)
    assert [int(LOG_LINE.match(line).group(1)) for line in lines] == [0, 1, 2, 3, 4]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    _run(tmp_path / "b", 0, 2, recipe)
    resumed, _, resumed_lines = _run(tmp_path / "b", 3, 4, recipe, resume_from=tmp_path / "b")
    assert [line.split()[1] for line in resumed_lines] == ["3", "4"]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    # without the momentum buffers the run is a different one: the check above can fail
    _run(tmp_path / "c", 0, 2, recipe)
    no_opt, _, _ = _run(tmp_path / "c", 3, 4, recipe, resume_from=tmp_path / "c", with_opt=False)
    assert not torch.equal(no_opt.conv1.weight, straight.conv1.weight)


def test_channels_last_trains_the_same_model(tmp_path):
    recipe = training.Recipe(epochs=2, batch_size=16, lr=0.1, save_epoch=1, seed=2)
    for name in "ab":
        (tmp_path / name).mkdir()
    plain, _, _ = _run(tmp_path / "a", 0, 2, recipe)
    nhwc, _, _ = _run(tmp_path / "b", 0, 2, dataclasses.replace(recipe, channels_last=True),
                          net=_net().to(memory_format=torch.channels_last))
    assert nhwc.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(plain.state_dict().values(), nhwc.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-5)


def test_resume_optimizer_refuses_other_settings(tmp_path):
    net = _net()
    sgd = training.make_optimizer(net.parameters(), name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4)
    training.save_checkpoint(str(tmp_path), 1, model=net, optimizer=sgd, acc=50.0)
    opt_file = str(tmp_path / "opt_state_1.t7")
    other_wd = training.make_optimizer(net.parameters(), name="sgd", lr=0.1, momentum=0.9, weight_decay=0.0)
    with pytest.raises(ModelError, match="weight_decay=0.0005"):
        training.resume_optimizer(other_wd, opt_file)
    adam = training.make_optimizer(net.parameters(), name="adam", lr=0.1, momentum=0.9, weight_decay=5e-4)
    with pytest.raises(ModelError, match="--optimizer sgd"):
        training.resume_optimizer(adam, opt_file)


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
        assert set(opt) == {"optimizer"} and len(opt["optimizer"]["param_groups"]) == 1
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

