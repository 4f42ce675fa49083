"""A custom dataset that cannot be loaded on MPI rank 1 (tests set-up error handling)."""
import os
import time

import torch
from torch.utils.data import TensorDataset


def make():
    if os.environ.get("PMI_RANK") == "1":
        raise FileNotFoundError("no data on this node")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, 32, 32, generator=g)
    return TensorDataset(x, torch.randint(0, 10, (32,), generator=g)), None


def stalled():
    """Like make(), but rank 1 takes 3 s to load (a slow file system)."""
    if os.environ.get("PMI_RANK") == "1":
        time.sleep(3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, 32, 32, generator=g)
    return TensorDataset(x, torch.randint(0, 10, (32,), generator=g)), None
