"""The paper's training recipe as a library; ``cifar10/main.py`` is its command line.

SGD with Nesterov momentum (or Adam) and weight decay; the learning rate is multiplied by
``lr_decay`` after epochs 150, 225 and 275; random crops with 4 pixels of zero padding and
horizontal flips; the reference's weight initialisation; checkpoints ``model_{e}.t7``
(``state_dict``, ``acc``, ``epoch``) and ``opt_state_{e}.t7`` (``optimizer``, plus ``epoch``)
at epochs 0, 1, every multiple of ``save_epoch`` and 150; one log line per epoch in the
reference's format. The optimizer state of an epoch is written before its model, each file
atomically, so a model file always has its optimizer state beside it; a save cut short leaves
at most a lone ``opt_state_{e}.t7`` that the resumed run replaces.

The data stays in memory as tensors (on the GPU when training there): each epoch draws one
permutation and, per batch, crop offsets and flips from a generator seeded by (seed, epoch),
augments the raw images with one gather and normalizes them afterwards. Nothing is decoded or
transformed per image, and an epoch's batches do not depend on how the run got there, so a run
resumed from a checkpoint and its optimizer state continues exactly as if never stopped.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._files import replacing, reporting_write_errors
from ._naming import checkpoint_names
from ._options import OPTIMIZERS
from ._seeds import epoch_seed
from .data import EvalData, TrainingData, normalize_
from .errors import DataError, ModelError, UsageError
from .evaluation import (
    check_model_fits,
    describe_inputs,
    evaluate,
    inputs_to_channels_last,
    make_batches,
    map_inputs,
)
from .models.loading import load_checkpoint_state, load_state_into
from .objective import Inputs, forward, get_loss

DECAY_EPOCHS = (150, 225, 275)  # the reference's learning-rate milestones
EXTRA_SAVE_EPOCH = 150  # the reference also keeps the model at the first decay
CROP_PADDING = 4
# The reference's log line. "test_top1" is the test ERROR in percent (100 - accuracy), as there.
LOG_FORMAT = "e: %d loss: %.5f train_err: %.3f test_top1: %.3f test_loss %.5f \n"

Log = Callable[[str], None]


# --------------------------------------------------------------------------- recipe pieces
def init_params(net: nn.Module) -> None:
    """The reference's initialisation, in place: Conv kaiming-normal (fan_in) with zero bias,
    BatchNorm weight 1 and bias 0, Linear normal(std=1e-3) with zero bias."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=1e-3)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def lr_at_epoch(epoch: int, *, lr: float, lr_decay: float,
                decay_epochs: Sequence[int] = DECAY_EPOCHS) -> float:
    """Learning rate used to train epoch ``epoch`` (1-based): ``lr`` times ``lr_decay`` for
    every decay epoch already finished (the reference decays after epochs 150, 225, 275)."""
    return lr * lr_decay ** sum(1 for d in decay_epochs if epoch > d)


def is_save_epoch(epoch: int, save_epoch: int) -> bool:
    """Whether the reference keeps a checkpoint at ``epoch``: 0 (the initialisation), 1,
    every multiple of ``save_epoch``, and 150."""
    return epoch in (0, 1) or epoch % save_epoch == 0 or epoch == EXTRA_SAVE_EPOCH


# --------------------------------------------------------------------------- data
def corrupt_labels(labels: torch.Tensor, *, prob: float, num_classes: int,
                   seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Redraw the labels of exactly ``round(prob * N)`` examples uniformly over all classes.

    This is the random-label experiment of Zhang et al. (2017): a redrawn label is uniform over
    all ``num_classes`` classes, so it keeps its true class with probability 1/C and ``prob=1``
    gives labels independent of the images. (Redrawing only among the *other* classes would
    leave labels that still say "not the true class", i.e. information about the image.) The
    examples and their new labels come from ``numpy.random.default_rng(seed)``, a generator used
    for nothing else: the same seed gives the same labels on every run and every machine.

    Args:
        labels: True labels ``(N,)``, int64.
        prob: Fraction of examples whose label is redrawn, in [0, 1].
        num_classes: Number of classes C.
        seed: Seed (the training script passes ``--rand_seed``).

    Returns:
        ``(new_labels, redrawn)``: the labels (a new tensor) and a bool mask of the redrawn ones.

    Raises:
        ValueError: ``prob`` outside [0, 1] or ``num_classes < 1``.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    n = len(labels)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(n, size=int(round(prob * n)), replace=False)
    new = rng.integers(0, num_classes, size=len(chosen))
    out = labels.clone()
    out[torch.from_numpy(chosen)] = torch.from_numpy(new).to(labels.dtype)
    redrawn = torch.zeros(n, dtype=torch.bool)
    redrawn[torch.from_numpy(chosen)] = True
    return out, redrawn


def random_crop_flip(x: torch.Tensor, *, generator: torch.Generator,
                     padding: int = CROP_PADDING) -> torch.Tensor:
    """RandomCrop(size, padding) followed by RandomHorizontalFlip, for a whole batch at once.

    Each image is padded with zeros by ``padding`` on every side, cut back to its size at a
    uniformly random offset, and mirrored left-right with probability 1/2, like torchvision's
    transforms on one image. The random numbers are drawn on the CPU from ``generator`` (the
    same batches on any device); the crop and flip are one gather on ``x``'s device.

    Args:
        x: Raw images ``(B, C, H, W)``.
        generator: CPU generator.
        padding: Zero padding on each side.

    Returns:
        A new tensor of ``x``'s shape.
    """
    b, c, h, w = x.shape
    span = 2 * padding + 1
    top = torch.randint(0, span, (b,), generator=generator)
    left = torch.randint(0, span, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    rows = top[:, None] + torch.arange(h)  # (B, H) rows of the padded image
    cols = left[:, None] + torch.arange(w)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    padded = F.pad(x, (padding, padding, padding, padding))  # (B, C, H+2p, W+2p), zeros
    dev = x.device
    return padded[torch.arange(b, device=dev)[:, None, None, None],
                  torch.arange(c, device=dev)[None, :, None, None],
                  rows.to(dev)[:, None, :, None],
                  cols.to(dev)[:, None, None, :]]


def train_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch of shuffled index batches, as a DataLoader with ``shuffle=True``.

    A last batch of a single example is merged into the one before it: BatchNorm cannot
    normalize a batch of one in training mode.
    """
    perm = torch.randperm(n, generator=generator)
    batches = list(perm.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


# --------------------------------------------------------------------------- optimizer
def make_optimizer(params: Iterable[torch.Tensor], *, name: str, lr: float, momentum: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """The reference's optimizers: SGD with Nesterov momentum, or Adam (its default betas).

    Nesterov needs momentum, so ``momentum=0`` gives plain SGD (the reference crashed there).
    """
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=momentum > 0)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


# --------------------------------------------------------------------------- checkpoints
def _bare(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.DataParallel) else model


def _atomic_save(obj: object, path: str) -> None:
    """torch.save under a temporary name, then rename: a kill leaves no half-written checkpoint.

    Raises:
        FileFormatError: the OS refused the write (full disk, no permission, name too long);
            ``path`` and the files written before are left as they were.
    """
    with reporting_write_errors(path, hint="the files written before are intact"), \
            replacing(path, sync=False) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)  # through a Python file: a full disk raises OSError, not RuntimeError


def save_checkpoint(folder: str, epoch: int, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    acc: float) -> None:
    """Write ``opt_state_{epoch}.t7`` ({'optimizer', 'epoch'}), then ``model_{epoch}.t7``
    ({'acc', 'epoch', 'state_dict'}): the reference's files and keys (without a DataParallel
    ``module.``) and the epoch of the optimizer state. The model comes last, so a run killed in
    between leaves a lone optimizer state, never a model whose optimizer state is missing."""
    model_name, opt_name = checkpoint_names(epoch)
    _atomic_save({"optimizer": optimizer.state_dict(), "epoch": epoch}, os.path.join(folder, opt_name))
    _atomic_save({"acc": acc, "epoch": epoch, "state_dict": _bare(model).state_dict()},
                 os.path.join(folder, model_name))


def _load_dict(path: str, key: str, flag: str) -> dict:
    if not os.path.isfile(path):
        raise ModelError(f"{flag} {path}: file not found; expected a checkpoint written by "
                         f"cifar10/main.py (check the path, relative to {os.getcwd()})"
                         + _latest_pair_hint(os.path.dirname(path)))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{flag} {path} is not a readable torch checkpoint "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    if not isinstance(obj, dict) or key not in obj:
        found = sorted(map(str, obj))[:6] if isinstance(obj, dict) else type(obj).__name__
        raise ModelError(f"{flag} {path} has no {key!r} entry (found {found}); expected a file "
                         f"written by cifar10/main.py")
    return obj


def resume_model(model: nn.Module, path: str) -> int:
    """Load the weights of ``model_{e}.t7`` into ``model``; return the epoch to continue at, e + 1.

    Raises:
        ModelError: missing or unreadable file, no ``epoch`` entry, or weights of another model.
    """
    ckpt = _load_dict(path, "epoch", "--resume_model")
    epoch = ckpt["epoch"]
    if isinstance(epoch, torch.Tensor):
        epoch = epoch.item()
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise ModelError(f"--resume_model {path}: its 'epoch' entry is {epoch!r}, expected an integer >= 0")
    load_state_into(_bare(model), load_checkpoint_state(path), source=path)
    return int(epoch) + 1


def resume_optimizer(optimizer: torch.optim.Optimizer, path: str, *, epoch: int | None = None) -> None:
    """Load ``opt_state_{e}.t7`` (momentum buffers, Adam moments) into ``optimizer``.

    Args:
        optimizer: This run's optimizer, over the model's parameters.
        path: The optimizer state file.
        epoch: The epoch of the resumed model, if any: the state must be of that epoch (read from
            the file's ``epoch`` entry, else from a name ``opt_state_{e}.t7``; unknown: not checked).

    Raises:
        ModelError: missing or unreadable file, state of another epoch or optimizer, other
            momentum or weight decay than this run's, or parameters that do not match the model.
    """
    stored = _load_dict(path, "optimizer", "--resume_opt")
    theirs = _optimizer_epoch(stored, path)
    if epoch is not None and theirs is not None and theirs != epoch:
        raise ModelError(f"--resume_opt {path} holds the optimizer state of epoch {theirs} but --resume_model "
                         f"is at epoch {epoch}; pass the two files of one epoch, e.g. "
                         f"{' '.join(checkpoint_names(epoch))}")
    saved = stored["optimizer"]
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not groups or "state" not in saved:
        raise ModelError(f"--resume_opt {path}: 'optimizer' is not an optimizer state_dict")
    kind = "adam" if "betas" in groups[0] else "sgd"
    mine = "adam" if isinstance(optimizer, torch.optim.Adam) else "sgd"
    if kind != mine:
        raise ModelError(f"--resume_opt {path} holds the state of {kind} but this run uses --optimizer "
                         f"{mine}; pass --optimizer {kind}")
    for key in ("momentum", "weight_decay"):
        theirs, ours = groups[0].get(key), optimizer.param_groups[0].get(key)
        if theirs is not None and ours is not None and not math.isclose(theirs, ours, rel_tol=1e-12):
            raise ModelError(f"--resume_opt {path} was saved with {key}={theirs} but this run has "
                             f"--{key} {ours}; pass --{key} {theirs} to continue that run")
    try:
        optimizer.load_state_dict(saved)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"--resume_opt {path} does not fit this model's parameters ({exc}); was it "
                         f"saved for another --model?") from None


def _optimizer_epoch(stored: dict, path: str) -> int | None:
    """The epoch of an optimizer state file: its ``epoch`` entry, else its name's, else None."""
    epoch = stored.get("epoch")
    if isinstance(epoch, torch.Tensor) and epoch.numel() == 1:
        epoch = epoch.item()
    if isinstance(epoch, (int, np.integer)) and not isinstance(epoch, bool):
        return int(epoch)
    match = re.fullmatch(r"opt_state_(\d+)\.t7", os.path.basename(path))
    return int(match.group(1)) if match else None


def save_eval_loaders(folder: str, *, data: TrainingData, test: EvalData, batch_size: int) -> list[str]:
    """Pickle the training data (normalized, not augmented, labels as trained on, e.g. corrupted)
    and the test data as ``trainloader.dat``/``testloader.dat`` in ``folder``, as the reference
    does for random-label runs, so ``plot_surface.py --trainloader ... --testloader ...``
    evaluates the landscape on the same labels. Existing files are kept.

    Returns:
        The files written.
    """
    written = []
    for name, inputs, y in (("trainloader.dat", lambda: _normalized_copy(data), data.y),
                            ("testloader.dat", lambda: test.x, test.y)):
        path = os.path.join(folder, name)
        if not os.path.exists(path):  # (a resumed run has them: no copy of the data then)
            dataset = torch.utils.data.TensorDataset(inputs(), y)
            _atomic_save(torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False), path)
            written.append(path)
    return written


def _normalized_copy(data: TrainingData) -> torch.Tensor:
    return data.x if data.mean is None else normalize_(data.x.clone(), data.mean, data.std)


def check_outputs(model: nn.Module, data: TrainingData, *, loss_name: str, spec: str) -> None:
    """Fail early, with one line, on a model that cannot take the inputs or whose outputs the
    loss cannot use with the targets (one forward pass on a few samples in eval mode, which
    changes nothing in the model; see :func:`evaluation.check_model_fits`).

    Raises:
        ModelError: naming the shapes seen and what was expected.
    """
    sample = map_inputs(lambda t: t[:4], data.x)
    check_model_fits(model, (sample, data.y[:4]), num_classes=data.num_classes, loss_name=loss_name,
                     name=f"model {spec}", data="the training data", targets=data.y)


# --------------------------------------------------------------------------- one epoch
@dataclass(frozen=True)
class EpochStats:
    """One line of the log: mean training loss and error (%), test error (%) and loss."""

    epoch: int
    loss: float
    train_err: float
    test_err: float
    test_loss: float

    def log_line(self) -> str:
        return LOG_FORMAT % (self.epoch, self.loss, self.train_err, self.test_err, self.test_loss)


@dataclass(frozen=True)
class Recipe:
    """The settings of a training run that the loop needs."""

    epochs: int
    batch_size: int
    lr: float
    lr_decay: float = 0.1
    save_epoch: int = 10
    loss_name: str = "crossentropy"
    augment: bool = True
    seed: int = 0
    decay_epochs: tuple[int, ...] = DECAY_EPOCHS
    channels_last: bool = False  # NHWC batches, for a model converted with the same flag

    def __post_init__(self) -> None:
        get_loss(self.loss_name)  # an unknown loss fails here, before any epoch


def train_epoch(model: nn.Module, x: Inputs, y: torch.Tensor, *, data: TrainingData,
                optimizer: torch.optim.Optimizer, recipe: Recipe,
                generator: torch.Generator) -> tuple[float, float]:
    """Train one epoch in training mode over ``x``, ``y`` (raw inputs and labels on the model's
    device); return the mean loss and the error in percent, as the reference measures them
    (on the augmented batches, while the weights change). Each step minimizes the batch's mean
    over the items the loss counts (e.g. non-ignored tokens); the error is NaN for losses
    without accuracy."""
    model.train()
    loss_fn = get_loss(recipe.loss_name)
    total = count = torch.zeros((), dtype=torch.float64, device=y.device)
    correct = None
    for idx in train_batches(len(y), recipe.batch_size, generator):
        idx = idx.to(y.device)
        inputs, targets = map_inputs(lambda t, idx=idx: t[idx], x), y[idx]
        if recipe.augment:
            inputs = random_crop_flip(inputs, generator=generator)
        if isinstance(inputs, torch.Tensor):
            normalize_(inputs, data.mean, data.std)
        if recipe.channels_last:
            inputs = inputs_to_channels_last(inputs)
        sums = loss_fn.sums(forward(model, inputs), targets, num_classes=data.num_classes)
        loss = sums.loss / sums.count
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, count = total + sums.loss.detach(), count + sums.count
        if sums.correct is not None:
            correct = sums.correct if correct is None else correct + sums.correct
    n = float(count)
    return float(total) / n, math.nan if correct is None else 100.0 - 100.0 * float(correct) / n


def evaluate_raw(model: nn.Module, x: Inputs, y: torch.Tensor, *, data: TrainingData,
                 batch_size: int, loss_name: str, channels_last: bool = False) -> tuple[float, float]:
    """Mean loss and error (%) in eval mode on raw inputs, normalized batch by batch as they are
    evaluated (no copy of the whole set), without augmentation."""
    def prepared(start: int) -> Inputs:
        inputs = map_inputs(lambda t: t[start:start + batch_size], x)
        if isinstance(inputs, torch.Tensor) and data.mean is not None:
            inputs = normalize_(inputs.clone(), data.mean, data.std)
        return inputs_to_channels_last(inputs) if channels_last else inputs

    batches = ((prepared(start), y[start:start + batch_size]) for start in range(0, len(y), batch_size))
    return evaluate_test(model, batches, loss_name=loss_name, num_classes=data.num_classes)


def evaluate_test(model: nn.Module, batches: Iterable[tuple[Inputs, torch.Tensor]], *,
                  loss_name: str, num_classes: int) -> tuple[float, float]:
    """Loss and error (%) in eval mode (error NaN for losses without accuracy)."""
    model.eval()
    loss, acc = evaluate(model, batches, loss_name=loss_name, num_classes=num_classes)
    return loss, math.nan if acc is None else 100.0 - acc


# --------------------------------------------------------------------------- the run
def planned_checkpoints(start_epoch: int, epochs: int, save_epoch: int) -> list[int]:
    """Epochs whose checkpoints a run from ``start_epoch`` (0 = fresh, with the initial model)
    to ``epochs`` writes."""
    return [e for e in range(start_epoch, epochs + 1) if is_save_epoch(e, save_epoch)]


def check_free(folder: str, epochs: Sequence[int]) -> str:
    """Refuse to overwrite checkpoints of an earlier run in ``folder``.

    The lone file of a save cut short (see :func:`interrupted_save`) is no checkpoint: it may
    be replaced.

    Returns:
        A one-line note naming that file when this run replaces it, else "".

    Raises:
        UsageError: some of the files this run would write exist; the message names them and
            says how to resume the latest complete checkpoint instead.
    """
    cut = interrupted_save(folder)
    lone = cut[1] if cut else ""
    planned = [name for e in epochs for name in checkpoint_names(e)]
    taken = [name for name in planned if name != lone and os.path.exists(os.path.join(folder, name))]
    if not taken:
        return (f"note: replacing {os.path.join(folder, lone)}, left alone by a save cut short at epoch "
                f"{cut[0]}" if lone in planned else "")
    last = latest_pair(folder)
    resume = ""
    if last is not None:
        which = "the latest one" if cut is None else (
            f"the latest complete pair, epoch {last} (the save of epoch {cut[0]} was cut short: "
            f"{lone} has no partner)")
        resume = f"resume {which} with {resume_flags(folder, last)}, "
    shown = ", ".join(taken[:6]) + (f" and {len(taken) - 6} more" if len(taken) > 6 else "")
    raise UsageError(f"{folder} already holds {shown} from an earlier run, which this run would "
                     f"overwrite; {resume}or start a separate run with --idx N or --save "
                     f"another_folder, or delete those files")


def resume_flags(folder: str, epoch: int) -> str:
    """The ``--resume_model ... --resume_opt ...`` flags that continue from ``epoch`` in ``folder``."""
    model_name, opt_name = checkpoint_names(epoch)
    return f"--resume_model {os.path.join(folder, model_name)} --resume_opt {os.path.join(folder, opt_name)}"


def latest_pair(folder: str) -> int | None:
    """The last epoch for which ``folder`` holds both ``model_{e}.t7`` and ``opt_state_{e}.t7``."""
    complete = [e for e, names in _checkpoint_files(folder).items() if len(names) == 2]
    return max(complete) if complete else None


def interrupted_save(folder: str) -> tuple[int, str] | None:
    """``(epoch, file)`` when the newest checkpoint epoch in ``folder`` has one file of its pair
    only: the mark of a run killed between the two writes (or, before the model was written
    last, after the model). None when the newest pair is complete or there is none."""
    found = _checkpoint_files(folder)
    if not found:
        return None
    top = max(found)
    return (top, found[top][0]) if len(found[top]) == 1 else None


def _latest_pair_hint(folder: str) -> str:
    last = latest_pair(folder)
    return (f"; the latest epoch with both files in {folder} is {last}: resume it with "
            f"{resume_flags(folder, last)}" if last is not None else "")


def _checkpoint_files(folder: str) -> dict[int, list[str]]:
    """Epoch -> the names of that epoch's checkpoint files in ``folder`` (one or both)."""
    found: dict[int, list[str]] = {}
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    for name in names:
        for prefix in ("model_", "opt_state_"):
            stem = name[len(prefix):-len(".t7")] if name.startswith(prefix) and name.endswith(".t7") else ""
            if stem.isdigit() and stem == str(int(stem)):
                found.setdefault(int(stem), []).append(name)
    return found


def train(model: nn.Module, optimizer: torch.optim.Optimizer, *, data: TrainingData, test: EvalData,
          recipe: Recipe, folder: str, start_epoch: int, device: torch.device, log: Log) -> list[EpochStats]:
    """Train from ``start_epoch`` to ``recipe.epochs``, logging every epoch and keeping the
    reference's checkpoints in ``folder``.

    A fresh run (``start_epoch=0``) first records the initial model as epoch 0: its loss and
    error on the training set (eval mode, no augmentation) and on the test set, and checkpoints
    ``model_0.t7``; then it trains epochs 1, 2, ...

    Args:
        model: On ``device`` (possibly wrapped in DataParallel).
        optimizer: Over the model's parameters, possibly resumed.
        data: Training data (raw; augmented and normalized per batch).
        test: Test data (normalized as ``data``), evaluated after every epoch.
        recipe: Epochs, batch size, learning-rate schedule, loss, augmentation, seed.
        folder: Existing folder for the checkpoints.
        start_epoch: 0 for a fresh run, else the first epoch to train (checkpoint epoch + 1).
        device: Where the data goes.
        log: Receives every log line (with its newline).

    Returns:
        The statistics of every logged epoch.
    """
    x, y = map_inputs(lambda t: t.to(device), data.x), data.y.to(device)
    if recipe.augment and not (isinstance(x, torch.Tensor) and x.dim() == 4):
        raise DataError(f"augmentation crops and flips images (N, C, H, W) but the training inputs "
                        f"are {describe_inputs(x)}; pass --noaug")
    test_batches = make_batches(test.x, test.y, recipe.batch_size, device=device,
                                channels_last=recipe.channels_last)
    history: list[EpochStats] = []

    def finish(epoch: int, loss: float, err: float) -> None:
        test_loss, test_err = evaluate_test(model, test_batches, loss_name=recipe.loss_name,
                                            num_classes=data.num_classes)
        history.append(EpochStats(epoch, loss, err, test_err, test_loss))
        log(history[-1].log_line())
        if is_save_epoch(epoch, recipe.save_epoch):
            save_checkpoint(folder, epoch, model=model, optimizer=optimizer, acc=100.0 - test_err)

    if start_epoch == 0:
        finish(0, *evaluate_raw(model, x, y, data=data, batch_size=recipe.batch_size,
                                loss_name=recipe.loss_name, channels_last=recipe.channels_last))
        start_epoch = 1
    for epoch in range(start_epoch, recipe.epochs + 1):
        set_lr(optimizer, lr_at_epoch(epoch, lr=recipe.lr, lr_decay=recipe.lr_decay,
                                      decay_epochs=recipe.decay_epochs))
        generator = torch.Generator().manual_seed(epoch_seed(recipe.seed, epoch))
        finish(epoch, *train_epoch(model, x, y, data=data, optimizer=optimizer, recipe=recipe,
                                   generator=generator))
    return history
