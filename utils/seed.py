"""Seeding: whole-run seeds, per-epoch seeds, deterministic mode."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def set_random_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and all CUDA devices).

    With ``deterministic``, also ask torch for deterministic algorithms (cuDNN deterministic, no
    benchmark, ``torch.use_deterministic_algorithms``); ops without a deterministic version warn.
    """
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def derive_seed(*parts: int) -> int:
    """A 31-bit seed mixed from integers (e.g. ``(seed, epoch, rank)``); different tuples give
    unrelated streams."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint32)[0] >> 1)


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> int:
    """Reseed every global RNG from ``(seed, epoch, rank)`` at the start of an epoch.

    Everything random in the epoch (augmentation in the main process, the base seed torch draws for
    data-loader workers, dropout) then depends only on these three numbers, so an epoch redone after a
    resume repeats exactly. Returns the derived seed.
    """
    epoch_seed = derive_seed(seed, epoch, rank)
    random.seed(epoch_seed)
    np.random.seed(epoch_seed)
    torch.manual_seed(epoch_seed)
    return epoch_seed
