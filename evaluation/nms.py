"""Keypoint non-maximum suppression by Object Keypoint Similarity (OKS), as MMPose 1.3.2 does it.

Each instance is a dict with ``keypoints`` (K, 3) = (x, y, score) in image pixels, ``score`` (float)
and ``area`` (float, pixels^2). The functions return indices into the input list, highest score first.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# COCO-17 keypoint sigmas, used when none are given (same default as MMPose and the COCO API).
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87,
                        .89, .89]) / 10.0


def oks_iou(g: np.ndarray, d: np.ndarray, a_g: float, a_d: np.ndarray,
            sigmas: np.ndarray | None = None, vis_thr: float | None = None) -> np.ndarray:
    """OKS between one instance and several others.

    Args:
        g: (K*3,) flattened (x, y, score) of the reference instance, image px.
        d: (N, K*3) the other instances.
        a_g: area of the reference instance (px^2).
        a_d: (N,) areas of the others.
        sigmas: (K,) per-keypoint sigmas; COCO's when None.
        vis_thr: if set, only keypoints whose score exceeds it in both instances count.

    Returns:
        (N,) float32 OKS values (0 where no keypoint counts). Rounded to float32 like MMPose,
        so that threshold decisions and soft-NMS rescoring follow it.
    """
    sigmas = COCO_SIGMAS if sigmas is None else np.asarray(sigmas)
    d = np.asarray(d)
    ious = np.zeros(len(d), dtype=np.float32)
    if len(d) == 0:
        return ious
    d = d.reshape(len(d), -1)
    g = np.asarray(g)
    variances = (sigmas * 2) ** 2
    # Work in the inputs' precision (float32 for model outputs and dataset sigmas), as MMPose does.
    dtype = np.result_type(d.dtype, variances.dtype)
    scale = ((a_g + np.asarray(a_d)) / 2 + np.spacing(1)).astype(dtype)
    e = ((d[:, 0::3] - g[0::3]) ** 2 + (d[:, 1::3] - g[1::3]) ** 2) / variances / scale[:, None] / 2
    for n, e_n in enumerate(e):
        if vis_thr is not None:
            e_n = e_n[(g[2::3] > vis_thr) & (d[n, 2::3] > vis_thr)]
        ious[n] = np.exp(-e_n).sum() / len(e_n) if len(e_n) else 0.0
    return ious


def _stack(instances: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = np.array([inst['score'] for inst in instances])
    kpts = np.array([np.asarray(inst['keypoints']).flatten() for inst in instances])
    areas = np.array([inst['area'] for inst in instances])
    return scores, kpts, areas


def oks_nms(instances: Sequence[dict], thr: float, sigmas: np.ndarray | None = None,
            vis_thr: float | None = None) -> np.ndarray:
    """Greedy OKS NMS: keep the best-scored instance, drop the others whose OKS with it is > ``thr``.

    Returns:
        (M,) int indices of kept instances, in decreasing score order (ties ordered as
        ``np.argsort(scores)[::-1]``, like MMPose).
    """
    if len(instances) == 0:
        return np.zeros(0, dtype=np.intp)
    scores, kpts, areas = _stack(instances)
    order = scores.argsort()[::-1]
    keep = []
    while len(order) > 0:
        i = order[0]
        keep.append(i)
        overlap = oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, vis_thr)
        order = order[1:][overlap <= thr]
    return np.array(keep, dtype=np.intp)


def soft_oks_nms(instances: Sequence[dict], thr: float, max_dets: int = 20,
                 sigmas: np.ndarray | None = None, vis_thr: float | None = None) -> np.ndarray:
    """Soft OKS NMS: after each pick, decay the others' scores by ``exp(-oks^2 / thr)`` and re-sort.

    Returns:
        (M,) int indices of at most ``max_dets`` instances in pick order. The decayed scores only
        decide the order; the instances keep their own scores (as in MMPose).
    """
    if len(instances) == 0:
        return np.zeros(0, dtype=np.intp)
    scores, kpts, areas = _stack(instances)
    order = scores.argsort()[::-1]
    scores = scores[order]
    keep = []
    while len(order) > 0 and len(keep) < max_dets:
        i = order[0]
        keep.append(i)
        overlap = oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, vis_thr)
        order = order[1:]
        scores = scores[1:] * np.exp(-overlap ** 2 / thr)
        resort = scores.argsort()[::-1]
        order = order[resort]
        scores = scores[resort]
    return np.array(keep, dtype=np.intp)
