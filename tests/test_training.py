"""training.py: the paper's recipe (schedule, initialisation, augmentation, resume), on tiny models."""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cifar_files import write_cifar
from conftest import LOG_LINE, SmallConvNet

from loss_landscape_toolkit import data as dataloader
from loss_landscape_toolkit import training
from loss_landscape_toolkit._naming import checkpoint_names
from loss_landscape_toolkit.errors import ModelError, UsageError
from loss_landscape_toolkit.models import create_model


# --------------------------------------------------------------------------- recipe pieces
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
        model_file, opt_file = (str(resume_from / n) for n in checkpoint_names(start_epoch - 1))
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


def test_a_save_cut_short_leaves_a_lone_optimizer_state_that_a_resume_replaces(tmp_path, monkeypatch):
    net = _net()
    sgd = training.make_optimizer(net.parameters(), name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4)
    for epoch in (0, 1, 2):
        training.save_checkpoint(str(tmp_path), epoch, model=net, optimizer=sgd, acc=50.0)
    real_save, calls = training._atomic_save, []

    def killed_after_one_write(obj, path):
        if calls:
            raise KeyboardInterrupt  # the kill, between the two files of epoch 4
        calls.append(path)
        real_save(obj, path)

    monkeypatch.setattr(training, "_atomic_save", killed_after_one_write)
    with pytest.raises(KeyboardInterrupt):
        training.save_checkpoint(str(tmp_path), 4, model=net, optimizer=sgd, acc=50.0)
    monkeypatch.undo()
    assert (tmp_path / "opt_state_4.t7").exists() and not (tmp_path / "model_4.t7").exists()
    assert training.interrupted_save(str(tmp_path)) == (4, "opt_state_4.t7")
    assert training.latest_pair(str(tmp_path)) == 2
    note = training.check_free(str(tmp_path), [4])  # resuming from epoch 2 rewrites epoch 4
    assert "replacing" in note and "opt_state_4.t7" in note
    with pytest.raises(UsageError, match="latest complete pair, epoch 2.*--resume_model .*model_2.t7"):
        training.check_free(str(tmp_path), [2, 4])


def test_resume_optimizer_refuses_the_state_of_another_epoch(tmp_path):
    net = _net()
    sgd = training.make_optimizer(net.parameters(), name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4)
    training.save_checkpoint(str(tmp_path), 3, model=net, optimizer=sgd, acc=50.0)
    with pytest.raises(ModelError, match="epoch 3 but --resume_model is at epoch 5"):
        training.resume_optimizer(sgd, str(tmp_path / "opt_state_3.t7"), epoch=5)
    training.resume_optimizer(sgd, str(tmp_path / "opt_state_3.t7"), epoch=3)
    # a file of the reference (no epoch entry): its name tells the epoch
    torch.save({"optimizer": sgd.state_dict()}, tmp_path / "opt_state_7.t7")
    with pytest.raises(ModelError, match="epoch 7 but --resume_model is at epoch 3"):
        training.resume_optimizer(sgd, str(tmp_path / "opt_state_7.t7"), epoch=3)
