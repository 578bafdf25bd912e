"""Map keypoints between keypoint sets (e.g. AIC-14 -> COCO-17) for evaluation converters.

A mapping is a list of ``(source_index, target_index)`` pairs; target keypoints not named by the
mapping are zero (coordinates, scores and visibilities), and their sigma is 1.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _split(mapping: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    for pair in mapping:
        if len(pair) != 2 or not all(isinstance(i, (int, np.integer)) for i in pair):
            raise ValueError('keypoint mapping entries must be (source_index, target_index) ints, '
                             f'got {pair!r}')
    return [int(p[0]) for p in mapping], [int(p[1]) for p in mapping]


def map_keypoints(values: np.ndarray, num_keypoints: int, mapping: Sequence[Sequence[int]]) -> np.ndarray:
    """Re-index per-keypoint values along the first axis.

    Args:
        values: (K, ...) per-keypoint values (coordinates (K, 2), scores (K,), ...).
        num_keypoints: K' of the target keypoint set.
        mapping: (source, target) index pairs.

    Returns:
        (K', ...) array of the same dtype, zero where the mapping names no source.
    """
    values = np.asarray(values)
    src, dst = _split(mapping)
    out = np.zeros((num_keypoints, *values.shape[1:]), dtype=values.dtype)
    out[dst] = values[src]
    return out


def map_sigmas(sigmas: Sequence[float] | np.ndarray, num_keypoints: int,
               mapping: Sequence[Sequence[int]]) -> np.ndarray:
    """(K',) sigmas of the target keypoint set: mapped ones copied, others 1."""
    sigmas = np.asarray(sigmas)
    src, dst = _split(mapping)
    out = np.ones(num_keypoints, dtype=sigmas.dtype)
    out[dst] = sigmas[src]
    return out


def map_annotation_keypoints(annotations: list[dict], num_keypoints: int,
                             mapping: Sequence[Sequence[int]]) -> None:
    """Re-index the ``keypoints`` [x, y, v] * K of COCO annotations in place (``num_keypoints`` set to K')."""
    for ann in annotations:
        kpts = np.asarray(ann['keypoints']).reshape(-1, 3)
        ann['keypoints'] = map_keypoints(kpts, num_keypoints, mapping).reshape(-1).tolist()
        if 'num_keypoints' in ann:
            ann['num_keypoints'] = num_keypoints
