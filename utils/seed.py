"""Seeding and RNG state capture: whole-run seeds, per-epoch seeds, deterministic mode."""
from __future__ import annotations

import os
import random
from typing import Any

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


def get_rng_state() -> dict[str, Any]:
    """States of Python's, NumPy's and torch's (CPU, CUDA) global RNGs, loadable with
    ``torch.load(weights_only=True)``."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        'python': random.getstate(),
        'numpy': {'keys': torch.from_numpy(np_state[1].astype(np.int64)), 'pos': int(np_state[2]),
                  'has_gauss': int(np_state[3]), 'cached_gaussian': float(np_state[4])},
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` captured."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    npst = state['numpy']
    np.random.set_state(('MT19937', npst['keys'].numpy().astype(np.uint32), npst['pos'], npst['has_gauss'],
                         npst['cached_gaussian']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
