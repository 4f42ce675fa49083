"""Train a model with the paper's recipe, keeping checkpoints per epoch (for trajectory plots).

Entry point for a checkout (`python cifar10/main.py --help`); installed, the same program is
`landscape_train`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout

from loss_landscape_toolkit.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
