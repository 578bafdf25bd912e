"""Test-time horizontal-flip helpers: bring outputs computed on a flipped crop back to the original crop.

All functions return new tensors (their inputs are not modified) and follow MMPose 1.3.2's flip test.
``flip_indices[k]`` is the index of keypoint k's left/right counterpart.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _as_index(flip_indices: Sequence[int] | Tensor, num_keypoints: int, device: torch.device) -> Tensor:
    """``flip_indices`` as an int64 tensor on ``device``, checked against ``num_keypoints``."""
    index = torch.as_tensor(flip_indices, dtype=torch.long, device=device).reshape(-1)
    if index.numel() != num_keypoints:
        raise ValueError(f'flip_indices has {index.numel()} entries but the outputs have '
                         f'{num_keypoints} keypoints')
    return index


def flip_coordinates(coords: Tensor, flip_indices: Sequence[int] | Tensor, shift_coords: bool,
                     input_size: tuple[int, int]) -> Tensor:
    """Un-flip normalised coordinates predicted on a flipped crop.

    Args:
        coords: (B, K, D) with normalised x (in [0, 1] of the crop width) in channel 0; other channels
            (y, sigmas) are only reordered.
        flip_indices: (K,) left/right counterpart of each keypoint.
        shift_coords: move x left by one input pixel (1 / input width) to undo the flip's half-pixel
            misalignment, as MMPose does.
        input_size: crop size (w, h) in pixels.

    Returns:
        (B, K, D) coordinates in the original (unflipped) crop.
    """
    if coords.ndim != 3:
        raise ValueError(f'flip_coordinates expects (B, K, D) coordinates, got shape {tuple(coords.shape)}')
    x = 1.0 - coords[..., :1]
    if shift_coords:
        x = x - 1.0 / float(input_size[0])
    flipped = torch.cat([x, coords[..., 1:]], dim=-1)
    return flipped[:, _as_index(flip_indices, coords.shape[1], coords.device)]


def flip_vectors(x_labels: Tensor, y_labels: Tensor,
                 flip_indices: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
    """Un-flip SimCC vectors predicted on a flipped crop.

    Args:
        x_labels: (B, K, Wx) x-axis vectors; reordered by ``flip_indices`` and reversed along Wx.
        y_labels: (B, K, Wy) y-axis vectors; only reordered.
        flip_indices: (K,) left/right counterpart of each keypoint.
    """
    if x_labels.ndim != 3 or y_labels.ndim != 3:
        raise ValueError(f'flip_vectors expects (B, K, W) vectors, got {tuple(x_labels.shape)} and '
                         f'{tuple(y_labels.shape)}')
    index = _as_index(flip_indices, x_labels.shape[1], x_labels.device)
    if y_labels.shape[1] != index.numel():
        raise ValueError(f'flip_indices has {index.numel()} entries but y_labels has '
                         f'{y_labels.shape[1]} keypoints')
    return x_labels[:, index].flip(-1), y_labels[:, index]


def flip_heatmaps(heatmaps: Tensor, flip_indices: Sequence[int] | Tensor | None = None,
                  flip_mode: str = 'heatmap', shift_heatmap: bool = True) -> Tensor:
    """Un-flip heatmaps predicted on a flipped crop.

    Args:
        heatmaps: (B, C, H, W) heatmaps.
        flip_indices: (K,) left/right counterpart of each keypoint, or None to only mirror.
        flip_mode: ``'heatmap'`` (C = K maps), ``'udp_combined'`` (C = 3K: map, x offset, y offset; the x
            offset is negated) or ``'offset'`` (C = 2K: (x, y) offset fields per keypoint; the x offset is
            negated).
        shift_heatmap: shift the mirrored maps right by one column (MMPose's alignment fix).

    Returns:
        (B, C, H, W) heatmaps aligned with the original crop.
    """
    if heatmaps.ndim != 4:
        raise ValueError(f'flip_heatmaps expects (B, C, H, W) heatmaps, got shape {tuple(heatmaps.shape)}')
    b, c, h, w = heatmaps.shape
    groups = {'heatmap': 1, 'udp_combined': 3, 'offset': 2}
    if flip_mode not in groups:
        raise ValueError(f'flip_mode must be one of {sorted(groups)}, got {flip_mode!r}')
    per_kpt = groups[flip_mode]
    if c % per_kpt:
        raise ValueError(f'flip_mode {flip_mode!r} needs a multiple of {per_kpt} channels, got {c}')
    maps = heatmaps.reshape(b, c // per_kpt, per_kpt, h, w).flip(-1)
    if flip_indices is not None:
        maps = maps[:, _as_index(flip_indices, c // per_kpt, heatmaps.device)]
    negate = {'udp_combined': 1, 'offset': 0}.get(flip_mode)
    if negate is not None:
        sign = torch.ones(per_kpt, dtype=maps.dtype, device=maps.device)
        sign[negate] = -1
        maps = maps * sign.view(1, 1, per_kpt, 1, 1)
    maps = maps.reshape(b, c, h, w)
    if shift_heatmap:
        maps = torch.cat([maps[..., :1], maps[..., :-1]], dim=-1)
    return maps
