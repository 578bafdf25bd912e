"""Keypoint accuracy functions: PCK, AUC of PCK, end-point error (MMPose semantics).

Shapes: N instances, K keypoints, D coordinates (2). Coordinates in any one pixel space.
"""
from __future__ import annotations

import numpy as np


def normalized_distances(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray,
                         norm_factor: np.ndarray) -> np.ndarray:
    """(K, N) distances ``|(pred - gt) / norm_factor|``, -1 where masked out.

    Args:
        pred, gt: (N, K, D) keypoints.
        mask: (N, K) bool, True for keypoints that count.
        norm_factor: (N, D) per-instance normaliser; instances with a 0 entry do not count, and
            entries <= 0 are treated as 1e6.
    """
    mask = np.asarray(mask, dtype=bool).copy()
    norm = np.array(norm_factor)  # a copy, in the caller's precision
    mask[(norm == 0).any(axis=1)] = False
    norm[norm <= 0] = 1e6
    distances = np.full(mask.shape, -1, dtype=np.float32)
    distances[mask] = np.linalg.norm(((pred - gt) / norm[:, None, :])[mask], axis=-1)
    return distances.T


def _fraction_below(distances: np.ndarray, thr: float) -> float:
    """Share of valid (!= -1) distances below ``thr``; -1 when none is valid."""
    valid = distances != -1
    if valid.sum() == 0:
        return -1
    return (distances[valid] < thr).sum() / valid.sum()


def keypoint_pck_accuracy(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, thr: float,
                          norm_factor: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Percentage of Correct Keypoints.

    Args:
        pred, gt: (N, K, D) keypoints; mask: (N, K) bool; thr: threshold on the normalised distance;
        norm_factor: (N, D) normaliser (e.g. bbox size).

    Returns:
        (per-keypoint accuracy (K,), with -1 for keypoints never visible; mean over keypoints with
        an accuracy; number of such keypoints).
    """
    distances = normalized_distances(pred, gt, mask, norm_factor)
    acc = np.array([_fraction_below(d, thr) for d in distances])
    valid = acc[acc >= 0]
    return acc, (valid.mean() if len(valid) else 0.0), len(valid)


def keypoint_auc(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, norm_factor: float,
                 num_thrs: int = 20) -> float:
    """Area under the PCK curve for thresholds 0, 1/num_thrs, ..., (num_thrs-1)/num_thrs.

    Args:
        pred, gt: (N, K, 2) keypoints px; mask: (N, K) bool; norm_factor: one normaliser in px.
    """
    norm = np.tile(np.array([[norm_factor, norm_factor]]), (pred.shape[0], 1))
    auc = 0
    for i in range(num_thrs):
        _, avg_acc, _ = keypoint_pck_accuracy(pred, gt, mask, i / num_thrs, norm)
        auc += 1.0 / num_thrs * avg_acc
    return auc


def keypoint_epe(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """Mean end-point error (px) over masked-in keypoints; pred, gt (N, K, D), mask (N, K)."""
    distances = normalized_distances(pred, gt, mask, np.ones((pred.shape[0], pred.shape[2]),
                                                                 dtype=np.float32))
    valid = distances[distances != -1]
    return valid.sum() / max(1, len(valid))
