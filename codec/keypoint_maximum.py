"""Arg-max location and value of heatmaps and SimCC vectors (shared by the decoders)."""
from __future__ import annotations

import numpy as np


def get_heatmap_maximum(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Location and value of each heatmap's maximum.

    Args:
        heatmaps: (K, H, W) or (B, K, H, W).

    Returns:
        locs: (K, 2) or (B, K, 2) float32 (x, y) in heatmap px; -1 where the maximum is <= 0.
        vals: (K,) or (B, K), the maximum values.
    """
    if not isinstance(heatmaps, np.ndarray) or heatmaps.ndim not in (3, 4):
        raise ValueError(f'heatmaps must be a numpy array of shape (K, H, W) or (B, K, H, W), got '
                         f'{getattr(heatmaps, "shape", type(heatmaps))}')
    lead, (h, w) = heatmaps.shape[:-2], heatmaps.shape[-2:]
    flat = heatmaps.reshape(-1, h * w)
    idx = np.argmax(flat, axis=1)
    vals = np.take_along_axis(flat, idx[:, None], axis=1)[:, 0]
    locs = np.stack((idx % w, idx // w), axis=-1).astype(np.float32)
    locs[vals <= 0.] = -1
    return locs.reshape(*lead, 2), vals.reshape(lead)


def get_simcc_maximum(simcc_x: np.ndarray, simcc_y: np.ndarray,
                      apply_softmax: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Location and value of the maxima of x- and y-axis SimCC vectors.

    Args:
        simcc_x: (K, Wx) or (N, K, Wx) scores over x bins.
        simcc_y: (K, Wy) or (N, K, Wy) scores over y bins (same leading shape as ``simcc_x``).
        apply_softmax: softmax each vector before taking the maximum.

    Returns:
        locs: (K, 2) or (N, K, 2) float32 (x, y) in SimCC bins; -1 where the score is <= 0.
        vals: (K,) or (N, K), the smaller of the two axis maxima.
    """
    for name, arr in (('simcc_x', simcc_x), ('simcc_y', simcc_y)):
        if not isinstance(arr, np.ndarray) or arr.ndim not in (2, 3):
            raise ValueError(f'{name} must be a numpy array of shape (K, W) or (N, K, W), got '
                             f'{getattr(arr, "shape", type(arr))}')
    if simcc_x.shape[:-1] != simcc_y.shape[:-1]:
        raise ValueError(f'simcc_x {simcc_x.shape} and simcc_y {simcc_y.shape} leading shapes differ')
    lead = simcc_x.shape[:-1]
    sx = simcc_x.reshape(-1, simcc_x.shape[-1])
    sy = simcc_y.reshape(-1, simcc_y.shape[-1])
    if apply_softmax:
        sx, sy = _softmax(sx), _softmax(sy)
    locs = np.stack((np.argmax(sx, axis=1), np.argmax(sy, axis=1)), axis=-1).astype(np.float32)
    max_x, max_y = np.amax(sx, axis=1), np.amax(sy, axis=1)
    vals = np.where(max_x > max_y, max_y, max_x)
    locs[vals <= 0.] = -1
    return locs.reshape(*lead, 2), vals.reshape(lead)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=1, keepdims=True))
    return e / np.sum(e, axis=1, keepdims=True)
