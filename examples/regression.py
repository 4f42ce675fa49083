"""A small MLP regressing a smooth function of two inputs, for the toolkit's mse loss.

- ``model()`` builds the network: 2 inputs -> 32 -> 32 -> 1, tanh activations;
- ``dataset()`` gives ``(x, y)`` pairs: x uniform on [-2, 2]^2, y = sin(2 x1) cos(x2) plus
  Gaussian noise of standard deviation NOISE, both float32, y of shape (1,) like the output;
- ``mse_per_item(outputs, targets)`` is a user loss equal to the built-in mse.

The noise sets the floor of the mean squared error: NOISE ** 2 = 0.0025.

Train and save a checkpoint with ``python examples/regression.py train reg.pt``.
"""
import argparse
import os
import time
from typing import Sequence

import torch
from torch import nn
from torch.utils.data import TensorDataset

NUM_TRAIN, NUM_TEST = 512, 256
TRAIN_SEED, TEST_SEED = 0, 1
NOISE = 0.05
EPOCHS = 100


def target_function(x: torch.Tensor) -> torch.Tensor:
    """sin(2 x1) cos(x2) of inputs of shape (N, 2), as shape (N, 1)."""
    return (torch.sin(2 * x[:, 0]) * torch.cos(x[:, 1])).unsqueeze(1)


def _samples(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` inputs (N, 2) and noisy targets (N, 1), the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=generator) * 4 - 2
    return x, target_function(x) + NOISE * torch.randn(n, 1, generator=generator)


def dataset() -> tuple[TensorDataset, TensorDataset]:
    """Train and test sets of ``(x, y)`` pairs: x float32 of shape (2,), y float32 of shape (1,).

    Returns:
        (train, test): NUM_TRAIN and NUM_TEST samples drawn with two seeds.
    """
    return TensorDataset(*_samples(NUM_TRAIN, TRAIN_SEED)), TensorDataset(*_samples(NUM_TEST, TEST_SEED))


def model(*, width: int = 32) -> nn.Sequential:
    """The MLP 2 -> width -> width -> 1 (1,185 parameters by default), initialized from
    torch's global seed."""
    return nn.Sequential(nn.Linear(2, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1))


def mse_per_item(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Squared error of each target element: for ``--loss``, equal to the built-in mse.

    The toolkit sums these over the data and divides by their number, which is the mean
    squared error over all target elements.

    Args:
        outputs: predictions, the same number of elements per item as ``targets``.
        targets: float targets of shape (N, 1).

    Returns:
        squared errors of shape (N, 1): one per item here.
    """
    return (outputs.reshape(targets.shape) - targets).square()


def mean_squared_error(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared error of ``net`` on ``(x, y)``, in eval mode."""
    net.eval()
    with torch.no_grad():
        return mse_per_item(net(x), y).mean().item()


def train(path: str, *, epochs: int = EPOCHS, seed: int = 0, batch_size: int = 64,
          lr: float = 1e-2) -> tuple[float, float]:
    """Train :func:`model` with Adam on the training set and save its state_dict to ``path``.

    Args:
        path: the checkpoint file to write (``torch.save(model.state_dict(), path)``).
        epochs: passes over the training set.
        seed: seeds the initialization and the order of the batches.
        batch_size: samples per step.
        lr: Adam's learning rate.

    Returns:
        (start, end): the mean squared error on the training set before and after training.
    """
    torch.manual_seed(seed)
    net = model()
    x, y = dataset()[0].tensors
    start = mean_squared_error(net, x, y)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=order).split(batch_size):
            loss = mse_per_item(net(x[idx]), y[idx]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    end = mean_squared_error(net, x, y)
    torch.save(net.state_dict(), path)
    return start, end


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train the model and save its state_dict")
    train_parser.add_argument("path", help="checkpoint file to write, e.g. reg.pt")
    train_parser.add_argument("--epochs", type=int, default=EPOCHS, help="passes over the training set")
    train_parser.add_argument("--seed", type=int, default=0, help="seed of the initialization and batch order")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    folder = os.path.dirname(os.path.abspath(args.path))
    if not os.path.isdir(folder):
        parser.error(f"cannot write {args.path}: folder {folder} does not exist; create it first")
    began = time.perf_counter()
    start, end = train(args.path, epochs=args.epochs, seed=args.seed)
    print(f"mean squared error on the training set: {start:.4f} at init, {end:.4f} after {args.epochs} epochs "
          f"({time.perf_counter() - began:.1f} s, noise floor {NOISE ** 2:.4f}); saved {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
