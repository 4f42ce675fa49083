"""Every seed of the toolkit: how they are derived from the user's seeds, and global seeding."""
from __future__ import annotations

import random

import numpy as np


def derive_seed(*keys: int) -> int:
    """A seed for a stream of its own, derived from ``keys`` (e.g. a run's seed and an epoch);
    a non-negative int64, the same on every machine."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0] >> 1)


def direction_seed(seed: int, idx: int) -> int:
    """Seed of the direction generator: ``seed`` itself for ``idx`` 0 (the reference's stream),
    and for a repeat ``idx`` > 0 a seed derived from (seed, idx), so every repeat gets new
    directions."""
    return seed if idx == 0 else derive_seed(seed, idx)


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of the generator that shuffles and augments epoch ``epoch`` of a run with ``seed``."""
    return derive_seed(seed, epoch)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices), as the reference's training does; torch's seed
    also fixes the initialisation of a model built afterwards."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
