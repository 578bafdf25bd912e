"""Pictures of what a validation predicted: each image with its predicted skeletons (the dataset's
colours) over its ground truth (one colour), from a COCO metric's final results after ``evaluate``."""
from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from evaluation.coco_metric import CocoMetric
from utils.output_files import write_image
from visualization.drawing import draw_pose, fit_scale, put_label, tile_mosaic

GT_COLOR = (255, 0, 255)  # BGR magenta: ground truth as rings and thin lines under the prediction


def find_coco_metric(metric: Any) -> CocoMetric | None:
    """The ``CocoMetric`` among ``metric`` (one metric or a sequence), or None."""
    metrics = metric if isinstance(metric, Sequence) else [metric]
    return next((m for m in metrics if isinstance(m, CocoMetric)), None)


def dataset_images(dataset: Any, limit: int | None = None) -> list[tuple[int, str]]:
    """``(img_id, img_path)`` of the dataset's images in sample order (first ``limit`` images)."""
    seen: dict[int, str] = {}
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        if info is not None and int(info['img_id']) not in seen:
            seen[int(info['img_id'])] = str(info['img_path'])
            if limit is not None and len(seen) >= limit:
                break
    return list(seen.items())


def _instances(records: Sequence[Mapping[str, Any]]) -> dict[int, list[dict]]:
    """COCO keypoint records ``{image_id, keypoints: [x, y, v/score] * K}`` as ``draw_pose`` instances
    (keypoints (K, 2) image px, keypoint_scores (K,)), grouped by image id."""
    out: dict[int, list[dict]] = defaultdict(list)
    for rec in records:
        if rec.get('iscrowd') or not rec.get('keypoints'):
            continue
        kpts = np.asarray(rec['keypoints'], dtype=np.float64).reshape(-1, 3)
        if not (kpts[:, 2] > 0).any():
            continue
        out[int(rec['image_id'])].append({'keypoints': kpts[:, :2], 'keypoint_scores': kpts[:, 2]})
    return out


def draw_predictions(img: np.ndarray, preds: Sequence[Mapping], gts: Sequence[Mapping],
                     dataset_meta: Mapping[str, Any], tile: tuple[int, int] | None = None,
                     kpt_thr: float = 0.3) -> np.ndarray:
    """``img`` (H, W, 3) BGR with ground truth ``gts`` (drawn where visibility > 0) in ``GT_COLOR`` and
    predictions ``preds`` (keypoints whose score > ``kpt_thr``) in the dataset's colours on top.
    Keypoints are (K, 2) px of ``img``. With ``tile`` (w, h) the image is first shrunk to fit it, so
    lines keep their width in a mosaic."""
    scale = 1.0
    if tile is not None:
        scale = min(1.0, fit_scale(img.shape, tile))
        if scale < 1.0:
            img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)),
                             interpolation=cv2.INTER_AREA)

    def scaled(instances: Sequence[Mapping]) -> list[dict]:
        return [{**inst, 'keypoints': np.asarray(inst['keypoints']) * scale} for inst in instances]

    out = draw_pose(img, scaled(gts), dataset_meta, kpt_thr=0.0, radius=4, thickness=1, alpha=1.0,
                    color=GT_COLOR)
    out = draw_pose(out, scaled(preds), dataset_meta, kpt_thr=kpt_thr, radius=3, thickness=2, alpha=1.0)
    return out


def prediction_pictures(metric: CocoMetric, dataset: Any, limit: int | None = None,
                        tile: tuple[int, int] | None = None) -> Iterator[tuple[int, str, np.ndarray]]:
    """``(img_id, img_path, picture)`` for the first ``limit`` images of ``dataset`` (all when None):
    the metric's final results (``metric.coco_results``, after rescoring and NMS) over the annotation
    file's ground truth. Images the metric holds no results for are skipped."""
    meta = metric.dataset_meta or dataset.metainfo
    preds = _instances(metric.coco_results)
    annotations = (metric.coco_data or {}).get('annotations', [])
    gts = _instances(annotations)
    for img_id, path in dataset_images(dataset, limit):
        if img_id not in preds:
            continue
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f'cannot read image {path!r} (image id {img_id}) to draw its predictions')
        picture = draw_predictions(img, preds[img_id], gts.get(img_id, []), meta, tile)
        yield img_id, path, picture


def prediction_mosaic(metric: Any, dataset: Any, num_images: int = 8,
                      tile: tuple[int, int] = (480, 360)) -> np.ndarray | None:
    """The first ``num_images`` validation images with predictions and ground truth, tiled (``tile``
    (w, h) px each, 4 per row) into one BGR image labelled with the image ids. ``metric``: one metric or
    several, after ``evaluate``; None when none is a ``CocoMetric`` or it holds no results."""
    coco = find_coco_metric(metric)
    if coco is None:
        return None
    pictures = []
    for img_id, _, picture in prediction_pictures(coco, dataset, num_images, tile):
        put_label(picture, f'img {img_id}  magenta: ground truth')
        pictures.append(picture)
    if not pictures:
        return None
    return tile_mosaic(pictures, tile, cols=min(4, len(pictures)))


def save_prediction_pictures(metric: Any, dataset: Any, out_dir: str | os.PathLike) -> int:
    """Write every image of ``dataset`` the metric holds results for, with predictions and ground truth
    drawn at full size, as ``out_dir/<image file name>``; returns how many were written. ``metric``:
    one metric or several, after ``evaluate``; one of them must be a ``CocoMetric``."""
    coco = find_coco_metric(metric)
    if coco is None:
        raise ValueError('drawing predictions needs a CocoMetric in val_evaluator')
    written = 0
    for _, path, picture in prediction_pictures(coco, dataset):
        write_image(Path(out_dir) / Path(path).name, picture)
        written += 1
    return written
