"""A warning when a metric's annotation file and the dataset being evaluated hold different images.

The COCO evaluation counts every annotated person of the metric's ``ann_file``: when the validation
dataset is a subset (another annotation file, or ``sample_interval``) while ``val_evaluator.ann_file``
still names the full file, the people of the images left out count as missed and AP comes out far too
low (0.34 instead of 0.82), with nothing else said. Predictions for images the metric's file lacks
cannot be evaluated at all.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from utils.dist import is_main_process

logger = logging.getLogger('mmpose_clean.evaluation')  # a child of utils.logger's logger: in train.log


def evaluated_image_ids(data: dict) -> set:
    """Ids of the images of a COCO annotation dict that hold a person the keypoint evaluation counts
    (not crowd, at least one keypoint with visibility > 0)."""
    return {ann['image_id'] for ann in data.get('annotations') or ()
            if not ann.get('iscrowd', 0) and any(v > 0 for v in ann['keypoints'][2::3])}


def check_metric_coverage(dataset: Any, metrics: Any | Sequence[Any]) -> list[str]:
    """Warn (logged once, on rank 0) for each metric whose annotation file does not cover ``dataset``.

    Args:
        dataset: the evaluated dataset; one without ``image_ids`` (e.g. a ``CombinedDataset``) is not
            checked. ``dataset.image_ids()`` are the images it covers, ``image_ids(with_samples=True)``
            those its samples come from.
        metrics: a metric or several; those without ground truth (``coco_data`` with ``annotations``,
            as ``CocoMetric`` has) are not checked.

    Returns:
        The warnings logged (empty when every file matches).
    """
    image_ids = getattr(dataset, 'image_ids', None)
    if image_ids is None or not is_main_process():
        return []
    covered, sampled = set(image_ids().tolist()), set(image_ids(with_samples=True).tolist())
    warnings = []
    for metric in metrics if isinstance(metrics, (list, tuple)) else [metrics]:
        data = getattr(metric, 'coco_data', None)
        if not data or 'annotations' not in data:
            continue
        unknown = sampled - {img['id'] for img in data['images']}
        uncovered = evaluated_image_ids(data) - covered
        parts = []
        if unknown:
            parts.append(f'{len(unknown)} of the dataset\'s {len(sampled)} images are not in the metric\'s '
                         '(their predictions cannot be evaluated)')
        if uncovered:
            parts.append(f'{len(uncovered)} of the metric\'s images with annotated people are not in the '
                         'dataset (they count as missed: AP comes out too low)')
        if parts:
            warnings.append(f'the metric\'s ann_file {metric.ann_file} and the evaluated dataset\'s '
                            f'{getattr(dataset, "ann_file", "")} hold different images: '
                            + '; '.join(parts) + '; give both the same annotation file')
            logger.warning(warnings[-1])
    return warnings
