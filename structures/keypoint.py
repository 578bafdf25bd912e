"""Keypoint geometry shared by transforms, models and metrics."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from structures.bbox import check_flip_direction


def flip_keypoints(keypoints: np.ndarray, keypoints_visible: np.ndarray | None,
                   image_size: tuple[int, int], flip_indices: Sequence[int],
                   direction: str = 'horizontal') -> tuple[np.ndarray, np.ndarray | None]:
    """Mirror keypoints inside an image of ``image_size`` (w, h) and swap left/right joints.

    Args:
        keypoints: (..., K, D) with (x, y) first, image px; ``x`` maps to ``w - 1 - x``.
        keypoints_visible: (..., K) or (..., K, C) or None; reordered like the keypoints.
        flip_indices: K indices, the mirror partner of each joint.
        direction: 'horizontal', 'vertical' or 'diagonal' (diagonal keeps joint order).

    Returns:
        (flipped keypoints (..., K, D), flipped visibility or None); inputs are not modified.
    """
    check_flip_direction(direction)
    kpt_axis = keypoints.ndim - 2
    if keypoints_visible is not None and keypoints_visible.shape[:kpt_axis + 1] != keypoints.shape[:-1]:
        raise ValueError(f'keypoints {keypoints.shape} and keypoints_visible {keypoints_visible.shape} '
                         'do not match')
    if direction == 'diagonal':
        keypoints = keypoints.copy()
    else:
        keypoints = keypoints.take(flip_indices, axis=kpt_axis)
        if keypoints_visible is not None:
            keypoints_visible = keypoints_visible.take(flip_indices, axis=kpt_axis)
    w, h = image_size
    if direction in ('horizontal', 'diagonal'):
        keypoints[..., 0] = w - 1 - keypoints[..., 0]
    if direction in ('vertical', 'diagonal'):
        keypoints[..., 1] = h - 1 - keypoints[..., 1]
    return keypoints, keypoints_visible
