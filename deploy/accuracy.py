"""Accuracy of a deployed (e.g. int8) pose model against its float reference on real crops."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from evaluation.evaluate import evaluate_model
from utils.registry import METRICS


def keypoint_deviation(reference: Any, candidate: Any, loader: Any) -> dict[str, float]:
    """Distance between the keypoints of two models on every crop of ``loader``, in input-crop px.

    Args:
        reference, candidate: models with ``predict_crops(inputs uint8 (B, 3, H, W)) -> (keypoints
            (B, K, 2) input-crop px, scores (B, K))`` (e.g. :class:`deploy.ort_backend.OrtPoseModel`).
        loader: yields ``pose_collate`` batches.

    Returns:
        ``{'mean_px', 'median_px', 'max_px', 'score_mean_abs'}`` over all keypoints of all crops.
    """
    distances, score_diffs = [], []
    for batch in loader:
        ref_kpts, ref_scores = reference.predict_crops(batch['inputs'])
        kpts, scores = candidate.predict_crops(batch['inputs'])
        distances.append(np.linalg.norm(kpts - ref_kpts, axis=-1).ravel())
        score_diffs.append(np.abs(scores - ref_scores).ravel())
    dist, score = np.concatenate(distances), np.concatenate(score_diffs)
    return dict(mean_px=float(dist.mean()), median_px=float(np.median(dist)), max_px=float(dist.max()),
                score_mean_abs=float(score.mean()))


def coco_ap(model: Any, cfg: Mapping[str, Any], loader: Any, ann_file: str) -> dict[str, float]:
    """COCO keypoint metrics of ``model`` (anything with ``predict(inputs, meta)``) on ``loader``'s crops,
    scored by the config's ``val_evaluator`` against ``ann_file``."""

    metric = METRICS.build(dict(cfg['val_evaluator'], ann_file=ann_file), cfg_path='val_evaluator')
    return evaluate_model(model, loader, metric, device='cpu', progress=False)
