"""The per-sample random generator that augmentation transforms draw from.

A dataset puts ``results['rng']`` (a ``np.random.Generator``) into every sample before running its
pipeline: ``np.random.default_rng(seed)`` with the per-sample seed the sampler hands out, so a
fixed-seed run gives the same augmentations whatever the number of workers, and every sample, worker
and epoch gets its own stream. Transforms draw only from :func:`sample_rng`; there is no module-level
generator.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import numpy as np

RNG_KEY = 'rng'


def sample_rng(results: MutableMapping[str, Any]) -> np.random.Generator:
    """The sample's generator ``results['rng']``. A sample without one (a transform called directly)
    gets a fresh, unseeded generator stored there, so its later transforms draw from it too."""
    rng = results.get(RNG_KEY)
    if rng is None:
        rng = results[RNG_KEY] = np.random.default_rng()
    return rng


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
