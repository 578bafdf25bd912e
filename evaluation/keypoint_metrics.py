"""Quick keypoint metrics: PCK (``PCK``/``PCKh``/``tPCK``), ``AUC`` and ``EPE``, as MMPose computes them.

All take predictions ``keypoints`` (B, K, 2) in image px and the batch meta's ground truth
``keypoints`` (B, K, 2) image px and ``keypoints_visible`` (B, K).
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evaluation.base_metric import BaseMetric
from evaluation.keypoint_eval import keypoint_auc, keypoint_epe, keypoint_pck_accuracy
from structures.arrays import to_numpy
from utils.registry import METRICS

NORM_ITEMS = {'bbox': 'PCK', 'head': 'PCKh', 'torso': 'tPCK'}


def _samples(preds: Mapping[str, Any], meta: Mapping[str, Any]) -> list[dict]:
    """One dict per sample: ``pred`` (1, K, 2), ``gt`` (1, K, 2), ``mask`` (1, K) bool."""
    pred = to_numpy(preds['keypoints'])
    gt = to_numpy(meta['keypoints']).reshape(pred.shape)
    mask = to_numpy(meta['keypoints_visible']).reshape(pred.shape[:2]).astype(bool)
    return [{'pred': pred[b:b + 1], 'gt': gt[b:b + 1], 'mask': mask[b:b + 1]} for b in range(len(pred))]


def _stack(results: list, key: str) -> np.ndarray:
    return np.concatenate([r[key] for r in results])


class _KeypointMetric(BaseMetric):
    def process(self, preds: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        """Store predictions ``keypoints`` (B, K, 2) with the meta's ground truth."""
        self.results.extend(_samples(preds, meta))


@METRICS.register_module()
class PCKAccuracy(_KeypointMetric):
    """Mean PCK over keypoints at threshold ``thr`` of the distance normalised by ``norm_item``.

    Args:
        thr: threshold on the normalised distance.
        norm_item: one or several of ``'bbox'`` (longer side of meta ``bbox`` (B, 4) xyxy -> ``PCK``),
            ``'head'`` (meta ``head_size`` (B,) -> ``PCKh``), ``'torso'`` (distance between keypoints 4
            and 5 -> ``tPCK``).
    """

    def __init__(self, thr: float = 0.05, norm_item: str | Sequence[str] = 'bbox',
                 prefix: str | None = None) -> None:
        super().__init__(prefix=prefix)
        self.thr = thr
        self.norm_item = list(norm_item) if isinstance(norm_item, (list, tuple)) else [norm_item]
        for item in self.norm_item:
            if item not in NORM_ITEMS:
                raise KeyError(f'PCKAccuracy: norm_item {item!r} is not one of {sorted(NORM_ITEMS)}')

    def process(self, preds: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        """Store a batch; needs meta ``bbox`` / ``head_size`` for those norm items."""
        samples = _samples(preds, meta)
        if 'bbox' in self.norm_item:
            if 'bbox' not in meta:
                raise KeyError('PCKAccuracy(norm_item="bbox") needs meta["bbox"] (B, 4) xyxy')
            bboxes = to_numpy(meta['bbox']).reshape(len(samples), 4)
        if 'head' in self.norm_item:
            if 'head_size' not in meta:
                raise KeyError('PCKAccuracy(norm_item="head") needs meta["head_size"] (B,)')
            head_sizes = to_numpy(meta['head_size']).reshape(len(samples))
        for b, sample in enumerate(samples):
            if 'bbox' in self.norm_item:
                size = np.max(bboxes[b, 2:] - bboxes[b, :2])
                sample['bbox_size'] = np.array([size, size]).reshape(-1, 2)
            if 'head' in self.norm_item:
                sample['head_size'] = np.array([head_sizes[b], head_sizes[b]]).reshape(-1, 2)
            if 'torso' in self.norm_item:
                size = np.linalg.norm(sample['gt'][0][4] - sample['gt'][0][5])
                if size < 1:
                    size = np.linalg.norm(sample['pred'][0][4] - sample['pred'][0][5])
                    warnings.warn('PCKAccuracy: ground-truth torso size < 1 px; using the predicted one',
                                  stacklevel=2)
                sample['torso_size'] = np.array([size, size]).reshape(-1, 2)
        self.results.extend(samples)

    def compute_metrics(self, results: list) -> dict[str, float]:
        """``{'PCK' | 'PCKh' | 'tPCK': mean accuracy}`` for the configured norm items."""
        pred, gt, mask = _stack(results, 'pred'), _stack(results, 'gt'), _stack(results, 'mask')
        metrics = {}
        for item, name in NORM_ITEMS.items():
            if item in self.norm_item:
                _, metrics[name], _ = keypoint_pck_accuracy(pred, gt, mask, self.thr,
                                                            _stack(results, f'{item}_size'))
        return metrics


@METRICS.register_module()
class AUC(_KeypointMetric):
    """Area under the PCK curve (``AUC``) with distances normalised by ``norm_factor`` px."""

    def __init__(self, norm_factor: float = 30, num_thrs: int = 20, prefix: str | None = None) -> None:
        super().__init__(prefix=prefix)
        self.norm_factor = norm_factor
        self.num_thrs = num_thrs

    def compute_metrics(self, results: list) -> dict[str, float]:
        """``{'AUC': value in [0, 1]}``."""
        return {'AUC': keypoint_auc(_stack(results, 'pred'), _stack(results, 'gt'), _stack(results, 'mask'),
                                    self.norm_factor, self.num_thrs)}


@METRICS.register_module()
class EPE(_KeypointMetric):
    """Mean end-point error (``EPE``, px) over visible keypoints."""

    def compute_metrics(self, results: list) -> dict[str, float]:
        """``{'EPE': mean distance in px}``."""
        return {'EPE': keypoint_epe(_stack(results, 'pred'), _stack(results, 'gt'), _stack(results, 'mask'))}
