"""The random generator that augmentation transforms draw from.

Datasets run each sample's pipeline inside :func:`seeded_rng` with a per-sample seed handed out by
the sampler, so a fixed-seed run gives the same augmentations whatever the number of workers, and
every sample, worker and epoch gets its own stream. Outside such a scope (direct ``dataset[i]``
calls) transforms draw from a process-wide generator that :func:`seed_default_rng` can reset.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

_default = np.random.default_rng()
_current: np.random.Generator | None = None


def get_rng() -> np.random.Generator:
    """The generator of the innermost :func:`seeded_rng` scope, else the process-wide one."""
    return _current if _current is not None else _default


def seed_default_rng(seed: int | None) -> None:
    """Reset the process-wide generator (``None``: fresh entropy)."""
    global _default
    _default = np.random.default_rng(seed)


@contextmanager
def seeded_rng(seed: int | None) -> Iterator[np.random.Generator]:
    """Make :func:`get_rng` return ``np.random.default_rng(seed)`` inside the block.

    ``seed=None`` keeps the current generator (no new scope).
    """
    global _current
    if seed is None:
        yield get_rng()
        return
    previous, _current = _current, np.random.default_rng(seed)
    try:
        yield _current
    finally:
        _current = previous


def truncated_normal(rng: np.random.Generator, size: tuple[int, ...], low: float = -1.0,
                     high: float = 1.0) -> np.ndarray:
    """Standard normal samples truncated to [low, high] (the law of ``scipy.stats.truncnorm``),
    drawn by rejection; float32 array of ``size``."""
    out = rng.standard_normal(size)
    bad = (out < low) | (out > high)
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = (out < low) | (out > high)
    return out.astype(np.float32)
