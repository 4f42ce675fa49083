"""Train a model with the paper's recipe, keeping checkpoints per epoch (for trajectory plots).

    python cifar10/main.py --model resnet56 --epochs 300 --save_epoch 10
    python cifar10/main.py --model resnet20 --dataset digits --epochs 10 --save_epoch 1 --lr 0.05

Checkpoints (model_{e}.t7, opt_state_{e}.t7) and log.out go to --save/<run name> relative to
the current folder, e.g. trained_nets/resnet56_sgd_lr=0.1_bs=128_wd=0.0005_mom=0.9_save_epoch=10.
Continue a run with --resume_model .../model_{e}.t7 --resume_opt .../opt_state_{e}.t7 (the two
files of one epoch). A file the OS refuses to write (no permission, full disk, name too long)
stops the run with one line naming it; the files written before stay as they were.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time
from typing import Callable, Sequence

import torch

from .. import _files, training
from .._devices import choose_device
from .._imports import is_spec
from .._naming import save_folder_name
from .._options import OPTIMIZERS
from .._seeds import seed_everything
from ..data import EvalData, TrainingData, load_eval_data, load_pickled_loader, load_training_data
from ..errors import DataError, UsageError
from ..models import list_models
from ..models.loading import build_model
from . import args as cli_args

PROG = "cifar10/main.py"


def build_parser() -> argparse.ArgumentParser:
    parser = cli_args.ArgumentParser(PROG, __doc__.split("\n\n")[0])
    g = parser.add_argument_group("optimization")
    g.add_argument("--batch_size", type=int, default=128)
    g.add_argument("--lr", type=float, default=0.1, help="learning rate")
    g.add_argument("--lr_decay", type=float, default=0.1,
                   help="learning-rate multiplier applied after epochs 150, 225 and 275")
    g.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS,
                   help="sgd (Nesterov momentum) or adam")
    g.add_argument("--weight_decay", type=float, default=0.0005)
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--epochs", type=int, default=300, help="number of epochs to train")
    g.add_argument("--rand_seed", type=int, default=0,
                   help="seed of the initialisation, the data order and augmentation, and the label corruption")
    g = parser.add_argument_group("checkpoints")
    g.add_argument("--save", default="trained_nets",
                   help="parent folder of the run's folder (relative to the current folder)")
    g.add_argument("--save_epoch", type=int, default=10,
                   help="keep checkpoints at every multiple of this epoch (and at epochs 0, 1, 150)")
    g.add_argument("--resume_model", default="", help="continue from this model_{e}.t7 at epoch e + 1")
    g.add_argument("--resume_opt", default="", help="with the optimizer state of this opt_state_{e}.t7")
    g.add_argument("--idx", type=int, default=0, help="index of a repeated run (a separate folder)")
    g = parser.add_argument_group("model")
    g.add_argument("--model", "-m", default="vgg9",
                   help="zoo name, path/to/file.py:factory or pkg.module:factory")
    cli_args.add_loss_arg(g)
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", default="cifar10",
                   help="cifar10 | digits | path/to/file.py:function | pkg.module:function")
    g.add_argument("--datapath", default=None, help=cli_args.DATAPATH_HELP)
    g.add_argument("--raw_data", action="store_true", help="no normalization (training and test data alike)")
    g.add_argument("--noaug", action="store_true", help="no random crop and flip")
    g.add_argument("--label_corrupt_prob", type=float, default=0.0,
                   help="fraction of training labels redrawn uniformly at random (seeded by --rand_seed)")
    g.add_argument("--trainloader", default="", help="train on this pickled DataLoader (trusted files only)")
    g.add_argument("--testloader", default="", help="test on this pickled DataLoader (trusted files only)")
    g.add_argument("--target_key", default="labels",
                   help="the key of the targets in dict items of a custom dataset")
    g = parser.add_argument_group("devices")
    g.add_argument("--ngpu", type=int, default=1, help="if > 1, DataParallel over all visible GPUs")
    g.add_argument("--cuda", "-c", action="store_true", help="require a GPU (default: a GPU if there is one)")
    g.add_argument("--device", default=None, help="explicit torch device, e.g. cpu or cuda:1")
    g.add_argument("--channels_last", action="store_true",
                   help="NHWC memory format for model and data (often faster, on CPUs too)")
    return parser


@cli_args.reports_usage_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    seed_everything(args.rand_seed)
    device = choose_device(args.device, cuda=args.cuda, prefer_gpu=True, ngpu=args.ngpu)
    data, test = load_data(args)
    folder = os.path.join(args.save, save_folder(args))
    model = build_initialised_model(args, data)
    start_epoch = training.resume_model(model, args.resume_model) if args.resume_model else 0
    if start_epoch > args.epochs:
        raise UsageError(f"--resume_model {args.resume_model} is at epoch {start_epoch - 1}, already "
                         f"at --epochs {args.epochs}; raise --epochs to train further")
    model = place_model(args, model, device)
    optimizer = training.make_optimizer(model.parameters(), name=args.optimizer, lr=args.lr,
                                        momentum=args.momentum, weight_decay=args.weight_decay)
    if args.resume_opt:
        training.resume_optimizer(optimizer, args.resume_opt, epoch=start_epoch - 1)
    with _files.reporting_write_errors(folder, hint="--save must name a folder you can write to"):
        os.makedirs(folder, exist_ok=True)
    note = training.check_free(folder, training.planned_checkpoints(start_epoch, args.epochs, args.save_epoch))
    if args.label_corrupt_prob > 0:
        training.save_eval_loaders(folder, data=data, test=test, batch_size=args.batch_size)
    announce(args, model, data, test, device, folder, start_epoch)
    if note:
        print(note, flush=True)
    recipe = training.Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             lr_decay=args.lr_decay, save_epoch=args.save_epoch,
                             loss_name=args.loss_name, augment=augment(args, data), seed=args.rand_seed,
                             channels_last=args.channels_last)
    history = run_logged(folder, lambda log: training.train(
        model, optimizer, data=data, test=test, recipe=recipe, folder=folder, start_epoch=start_epoch,
        device=device, log=log))
    last = history[-1]
    result = (f"test loss {last.test_loss:.5g}" if last.test_err != last.test_err  # NaN: no accuracy
              else f"test accuracy {100 - last.test_err:.2f}%")
    print(f"done: epoch {last.epoch}, {result}; checkpoints and log.out in {folder}", flush=True)
    return 0


def place_model(args: argparse.Namespace, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model on ``device``, in the requested memory format, wrapped for several GPUs."""
    model = model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.ngpu > 1:
        model = torch.nn.DataParallel(model)
    return model


def run_logged(folder: str, run: Callable[[training.Log], list[training.EpochStats]]) -> list[training.EpochStats]:
    """Call ``run(log)`` with a ``log`` that appends each line to ``folder``/log.out and shows
    it with the epoch's time; return what ``run`` returns.

    Raises:
        FileFormatError: log.out cannot be opened or written (one line naming it and why).
    """
    path = os.path.join(folder, "log.out")
    with contextlib.ExitStack() as stack:
        with _files.reporting_write_errors(path):
            log_file = stack.enter_context(open(path, "a", buffering=1))
        clock = [time.perf_counter()]

        def log(line: str) -> None:
            with _files.reporting_write_errors(path):
                log_file.write(line)  # the reference's line; the screen also shows the epoch's time
            now = time.perf_counter()
            print(f"{line.rstrip()}  ({now - clock[0]:.1f} s)", flush=True)
            clock[0] = now

        return run(log)


def check_args(args: argparse.Namespace) -> None:
    """Refuse values the recipe cannot use, before anything is loaded."""
    rules = [
        (args.batch_size >= 1, f"--batch_size must be >= 1, got {args.batch_size}"),
        (args.lr > 0, f"--lr must be > 0, got {args.lr}"),
        (args.lr_decay > 0, f"--lr_decay must be > 0, got {args.lr_decay}"),
        (args.weight_decay >= 0, f"--weight_decay must be >= 0, got {args.weight_decay}"),
        (args.momentum >= 0, f"--momentum must be >= 0, got {args.momentum}"),
        (args.epochs >= 1, f"--epochs must be >= 1, got {args.epochs}"),
        (args.save_epoch >= 1, f"--save_epoch must be >= 1, got {args.save_epoch}"),
        (args.idx >= 0, f"--idx must be >= 0, got {args.idx}"),
        (0.0 <= args.label_corrupt_prob <= 1.0,
         f"--label_corrupt_prob must be in [0, 1], got {args.label_corrupt_prob}"),
        (bool(args.trainloader) == bool(args.testloader),
         "--trainloader and --testloader go together; give both pickled loaders or neither"),
        (not args.resume_opt or bool(args.resume_model),
         "--resume_opt needs --resume_model (the optimizer state belongs to that model's weights)"),
    ]
    for ok, message in rules:
        if not ok:
            raise UsageError(message)
    if not is_spec(args.model) and args.model not in list_models():
        build_model(args.model)  # raises ModelError with close matches


def load_data(args: argparse.Namespace) -> tuple[TrainingData, EvalData]:
    """Training data (raw, labels corrupted on request) and test data (normalized alike)."""
    if args.trainloader:
        train = load_pickled_loader(args.trainloader)
        test = load_pickled_loader(args.testloader)
        data = TrainingData(x=train.x, y=train.y, mean=None, std=None,
                                       num_classes=max(train.num_classes, test.num_classes),
                                       description=train.description)
    else:
        data = load_training_data(args.dataset, datapath=args.datapath, raw_data=args.raw_data,
                                  target_key=args.target_key)
        test = load_eval_data(args.dataset, split="test", datapath=args.datapath, raw_data=args.raw_data,
                              target_key=args.target_key)
    if args.label_corrupt_prob > 0:
        labels, redrawn = training.corrupt_labels(data.y, prob=args.label_corrupt_prob,
                                                  num_classes=data.num_classes, seed=args.rand_seed)
        changed = int((labels != data.y).sum())
        data = TrainingData(
            x=data.x, y=labels, mean=data.mean, std=data.std, num_classes=data.num_classes,
            description=(f"{data.description}; labels of {int(redrawn.sum())} of {len(labels)} examples "
                         f"redrawn uniformly (seed {args.rand_seed}), {changed} now differ from the true class"))
    if item_shapes(test.x) != item_shapes(data.x):
        raise DataError(f"training inputs have shape {item_shapes(data.x)} but test inputs "
                        f"{item_shapes(test.x)}; both splits must have one shape")
    return data, test


def save_folder(args: argparse.Namespace) -> str:
    return save_folder_name(
        model=args.model, optimizer=args.optimizer, lr=args.lr, lr_decay=args.lr_decay,
        batch_size=args.batch_size, weight_decay=args.weight_decay, momentum=args.momentum,
        save_epoch=args.save_epoch, loss_name=args.loss_name, noaug=args.noaug,
        raw_data=args.raw_data, label_corrupt_prob=args.label_corrupt_prob, ngpu=args.ngpu,
        idx=args.idx, dataset=args.dataset)


def build_initialised_model(args: argparse.Namespace, data: TrainingData) -> torch.nn.Module:
    """The model, with the reference's initialisation for zoo models (a factory of your own
    keeps its own), checked to give one output per class."""
    model = build_model(args.model, num_classes=data.num_classes)
    if not is_spec(args.model):
        training.init_params(model)
    training.check_outputs(model, data, loss_name=args.loss_name, spec=args.model)
    return model


def augment(args: argparse.Namespace, data: TrainingData) -> bool:
    # pickled loaders deliver inputs already transformed (and normalized): not augmented again;
    # crops and flips are for images only
    return not args.noaug and not args.trainloader and is_image_data(data)


def is_image_data(data: TrainingData) -> bool:
    return isinstance(data.x, torch.Tensor) and data.x.dim() == 4 and data.x.is_floating_point()


def item_shapes(x: object) -> object:
    """The shape of one input item (a dict of them for keyword inputs), to compare splits."""
    if isinstance(x, dict):
        return {key: tuple(t.shape[1:]) for key, t in x.items()}
    return tuple(x.shape[1:])


def announce(args: argparse.Namespace, model: torch.nn.Module, data: TrainingData,
             test: EvalData, device: torch.device, folder: str, start_epoch: int) -> None:
    nparams = sum(p.numel() for p in model.parameters())
    start = (f"resuming at epoch {start_epoch} from {args.resume_model}"
             + ("" if args.resume_opt else " (fresh optimizer state: no --resume_opt)")
             if start_epoch else "starting at epoch 0 (the initial model)")
    notes = []
    if args.trainloader and not args.noaug:
        notes.append("note: pickled loaders are used as they are: no augmentation added")
    elif not args.noaug and not is_image_data(data):
        notes.append("note: the inputs are not images (N, C, H, W): no augmentation added")
    lines = [
        f"model: {args.model} ({nparams:,} parameters) on {device}",
        f"training data: {data.description}",
        f"test data: {test.description}",
        f"optimizer: {args.optimizer}, lr {args.lr} (x{args.lr_decay} after epochs "
        f"{', '.join(map(str, training.DECAY_EPOCHS))}), weight decay {args.weight_decay}, momentum "
        f"{args.momentum}, batch size {args.batch_size}, augmentation {'on' if augment(args, data) else 'off'}",
        f"{start}; training to epoch {args.epochs}",
        f"checkpoints and log.out: {folder} ({os.path.abspath(folder)})",
        *notes,
    ]
    print("\n".join(lines), flush=True)

