"""COCO keypoint AP/AR metric with MMPose 1.3.2's rescoring, OKS NMS and result format."""
from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evaluation.base_metric import BaseMetric
from evaluation.coco_eval import evaluate_keypoints, load_coco_annotations, num_annotated_keypoints
from evaluation.keypoint_mapping import map_annotation_keypoints, map_keypoints, map_sigmas
from evaluation.nms import oks_nms, soft_oks_nms
from structures.arrays import to_numpy
from structures.bbox import bbox_xyxy2xywh
from utils.errors import DataError
from utils.output_files import write_text_atomic
from utils.registry import METRICS

SCORE_MODES = ('bbox', 'bbox_keypoint', 'bbox_rle', 'keypoint')
NMS_MODES = ('oks_nms', 'soft_oks_nms', 'none')


def batch_to_instances(preds: Mapping[str, Any], meta: Mapping[str, Any]) -> list[dict]:
    """Per-instance prediction records from one top-down batch.

    Args:
        preds: ``keypoints`` (B, K, 2) image px, ``keypoint_scores`` (B, K).
        meta: batch meta (see the data contract): ``img_id`` (B,), ``id`` (B,), optional
            ``category_id`` (B,) (default 1), ``bbox`` (B, 4) xyxy image px, ``bbox_score`` (B,),
            ``bbox_scale`` (B, 2) image px (its product is the instance area used by OKS NMS).

    Returns:
        B dicts: ``img_id``, ``id``, ``category_id``, ``keypoints`` (K, 2), ``keypoint_scores`` (K,),
        ``bbox_score``, and where available ``bbox`` (4,) xywh and ``area``.
    """
    keypoints = to_numpy(preds['keypoints'])
    scores = to_numpy(preds['keypoint_scores'])
    if keypoints.ndim != 3 or scores.shape != keypoints.shape[:2]:
        raise ValueError(f'CocoMetric expects preds keypoints (B, K, 2) and keypoint_scores (B, K), got '
                         f'{keypoints.shape} and {scores.shape}')
    batch = len(keypoints)
    img_ids = to_numpy(meta['img_id']).reshape(batch)
    ids = to_numpy(meta['id']).reshape(batch)
    cat_ids = to_numpy(meta.get('category_id', np.ones(batch, dtype=np.int64))).reshape(batch)
    bbox_scores = (to_numpy(meta['bbox_score']).reshape(batch) if 'bbox_score' in meta
                   else np.ones(batch, dtype=np.float32))
    bboxes = areas = None
    if 'bbox' in meta:
        bboxes = bbox_xyxy2xywh(to_numpy(meta['bbox']).reshape(batch, 4))
    if 'bbox_scale' in meta:
        areas = np.prod(to_numpy(meta['bbox_scale']).reshape(batch, 2), axis=1)
    instances = []
    for b in range(batch):
        inst = dict(img_id=int(img_ids[b]), id=int(ids[b]), category_id=int(cat_ids[b]),
                    keypoints=keypoints[b], keypoint_scores=scores[b], bbox_score=bbox_scores[b])
        if bboxes is not None:
            inst['bbox'] = bboxes[b]
        if areas is not None:
            inst['area'] = areas[b]
        instances.append(inst)
    return instances


def write_coco_results(results: Sequence[dict], path: str | os.PathLike) -> None:
    """Write COCO keypoint results (``image_id``, ``category_id``, ``keypoints``, ``score``, ...) as JSON
    (atomically: a temporary file renamed when complete)."""
    write_text_atomic(path, json.dumps(list(results), sort_keys=True, indent=4))


@METRICS.register_module()
class CocoMetric(BaseMetric):
    """COCO keypoint AP/AR (``coco/AP``, ``coco/AP .5``, ..., ``coco/AR (L)``), numbers as MMPose 1.3.2.

    Per image, predictions are sorted by instance ``id`` (duplicates of an id dropped), rescored by
    ``score_mode``, reduced by ``nms_mode`` and evaluated with the COCO keypoint protocol (at most 20
    detections per image).

    Args:
        ann_file: COCO keypoint annotation JSON (required unless ``format_only``).
        use_area: use the annotations' ``area`` for OKS; False uses 0.53 * bbox area (AIC, CrowdPose).
        iou_type: only ``'keypoints'``.
        score_mode: instance score: ``'bbox'`` = box score; ``'bbox_keypoint'`` = box score * mean of
            the keypoint scores above ``keypoint_score_thr``; ``'bbox_rle'`` = box score + mean + max
            keypoint score; ``'keypoint'`` = mean keypoint score.
        keypoint_score_thr: threshold for ``'bbox_keypoint'``.
        nms_mode: ``'oks_nms'``, ``'soft_oks_nms'`` (keeps at most 20 per image) or ``'none'``.
        nms_thr: OKS threshold of the NMS.
        format_only: only write the results file (needs ``outfile_prefix``); :meth:`evaluate` gives {}.
        outfile_prefix: if set, results are written to ``{outfile_prefix}.keypoints.json``.
        pred_converter / gt_converter: ``dict(num_keypoints=K', mapping=[(src, dst), ...])`` mapping
            predicted / annotated keypoints to another keypoint set (sigmas follow ``gt_converter``).
        prefix: metric name prefix (default ``'coco'``).

    After :meth:`evaluate`, ``self.instances`` holds the gathered per-instance records (what
    ``evaluation.prediction_file.write_predictions`` writes) and ``self.coco_results`` the final COCO-format
    results (both on rank 0).
    """

    default_prefix = 'coco'

    def __init__(self, ann_file: str | None = None, use_area: bool = True, iou_type: str = 'keypoints',
                 score_mode: str = 'bbox_keypoint', keypoint_score_thr: float = 0.2,
                 nms_mode: str = 'oks_nms', nms_thr: float = 0.9, format_only: bool = False,
                 pred_converter: dict | None = None, gt_converter: dict | None = None,
                 outfile_prefix: str | None = None, prefix: str | None = None) -> None:
        super().__init__(prefix=prefix)
        if iou_type != 'keypoints':
            raise ValueError(f"CocoMetric: iou_type must be 'keypoints', got {iou_type!r}")
        if score_mode not in SCORE_MODES:
            raise ValueError(f'CocoMetric: score_mode must be one of {SCORE_MODES}, got {score_mode!r}')
        if nms_mode not in NMS_MODES:
            raise ValueError(f'CocoMetric: nms_mode must be one of {NMS_MODES}, got {nms_mode!r}')
        if format_only and outfile_prefix is None:
            raise ValueError('CocoMetric: format_only=True needs outfile_prefix (where to write results)')
        if ann_file is None and not format_only:
            raise ValueError('CocoMetric: ann_file is required unless format_only=True')
        self.ann_file = ann_file
        self.coco_data = (None if ann_file is None
                          else load_coco_annotations(ann_file, require_annotations=not format_only))
        self.use_area = use_area
        self.iou_type = iou_type
        self.score_mode = score_mode
        self.keypoint_score_thr = keypoint_score_thr
        self.nms_mode = nms_mode
        self.nms_thr = nms_thr
        self.format_only = format_only
        self.outfile_prefix = outfile_prefix
        self.pred_converter = pred_converter
        self.gt_converter = gt_converter
        self.instances: list[dict] = []
        self.coco_results: list[dict] = []
        if gt_converter is not None and self.coco_data is not None and 'annotations' in self.coco_data:
            map_annotation_keypoints(self.coco_data['annotations'], gt_converter['num_keypoints'],
                                     gt_converter['mapping'])

    @BaseMetric.dataset_meta.setter
    def dataset_meta(self, meta: Mapping | None) -> None:
        meta = None if meta is None else dict(meta)
        if meta is not None and self.gt_converter is not None:
            meta['sigmas'] = map_sigmas(meta['sigmas'], self.gt_converter['num_keypoints'],
                                        self.gt_converter['mapping'])
            meta['num_keypoints'] = len(meta['sigmas'])
        self._dataset_meta = meta

    def process(self, preds: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        """Store one batch: preds ``keypoints`` (B, K, 2) image px, ``keypoint_scores`` (B, K);
        meta as in :func:`batch_to_instances`."""
        self.results.extend(batch_to_instances(preds, meta))

    def compute_metrics(self, results: list) -> dict[str, float]:
        """AP/AR of per-instance records (:func:`batch_to_instances` format)."""
        if self.dataset_meta is None or 'sigmas' not in self.dataset_meta:
            raise ValueError('CocoMetric: set metric.dataset_meta = dataset.metainfo (needs "sigmas" and '
                             '"num_keypoints") before evaluating')
        if not results:
            raise DataError(f'CocoMetric: no predictions to evaluate (annotation file {self.ann_file})')
        sigmas = np.asarray(self.dataset_meta['sigmas'])
        self.instances = list(results)
        by_image = self._group_sorted_unique(results)
        self._check_predictions(by_image, len(sigmas))
        kept = {img_id: self._rescore_and_nms(insts, sigmas) for img_id, insts in by_image.items()}
        return self.evaluate_coco_results([self._to_coco(inst) for insts in kept.values() for inst in insts])

    def evaluate_coco_results(self, coco_results: list[dict]) -> dict[str, float]:
        """AP/AR (names without the prefix) of final COCO keypoint results (``image_id``, ``category_id``,
        ``keypoints`` [x, y, score] * K image px, ``score``): no rescoring or NMS. Writes them to
        ``outfile_prefix.keypoints.json`` when set; ``{}`` with ``format_only``."""
        self.coco_results = coco_results
        if self.outfile_prefix is not None:
            write_coco_results(self.coco_results, f'{self.outfile_prefix}.keypoints.json')
        if self.format_only:
            return {}
        if not coco_results:
            raise DataError(f'CocoMetric: no predictions to evaluate (annotation file {self.ann_file})')
        sigmas = np.asarray(self.dataset_meta['sigmas'])
        sizes = sorted({len(r['keypoints']) for r in coco_results} - {3 * len(sigmas)})
        if sizes:
            raise DataError(f'CocoMetric: results with {sizes[0]} keypoint numbers; expected x, y, score '
                            f'for each of the {len(sigmas)} keypoints ({3 * len(sigmas)} numbers)')
        self._check_image_ids({r['image_id'] for r in coco_results})
        return evaluate_keypoints(self.coco_data, self.coco_results, sigmas, self.use_area,
                                  str(self.ann_file))

    def _group_sorted_unique(self, results: list) -> dict[int, list[dict]]:
        """Instances grouped by image (first-seen order), sorted by ``id``, one per ``id``."""
        by_image: dict[int, list[dict]] = defaultdict(list)
        for inst in results:
            inst = dict(inst)
            if self.pred_converter is not None:
                num, mapping = self.pred_converter['num_keypoints'], self.pred_converter['mapping']
                inst['keypoints'] = map_keypoints(inst['keypoints'], num, mapping)
                inst['keypoint_scores'] = map_keypoints(inst['keypoint_scores'], num, mapping)
            if 'area' not in inst:
                kpts = np.asarray(inst['keypoints'])
                inst['area'] = np.ptp(kpts[:, 0]) * np.ptp(kpts[:, 1])
            by_image[inst['img_id']].append(inst)
        for img_id, insts in by_image.items():
            insts = sorted(insts, key=lambda x: x['id'])
            by_image[img_id] = [x for i, x in enumerate(insts) if i == 0 or x['id'] != insts[i - 1]['id']]
        return by_image

    def _check_predictions(self, by_image: dict[int, list[dict]], num_sigmas: int) -> None:
        """Clear errors, naming the first offending prediction (img_id, id), for predictions the annotation
        file cannot evaluate: non-finite values, a keypoint count that differs, unknown image ids."""
        ann_k = num_annotated_keypoints(self.coco_data) if self.coco_data is not None else None
        expected, source = (ann_k, f'{self.ann_file} annotates') if ann_k is not None else \
            (num_sigmas, 'dataset_meta has sigmas for')
        for insts in by_image.values():
            for inst in insts:
                where = f'CocoMetric: prediction (img_id {inst["img_id"]}, id {inst["id"]})'
                k = np.asarray(inst['keypoints']).shape[0]
                if k != expected:
                    raise DataError(f'{where} has {k} keypoints but {source} {expected} per instance')
                for key in ('keypoints', 'keypoint_scores', 'bbox_score'):
                    if not np.isfinite(np.asarray(inst[key], dtype=np.float64)).all():
                        raise DataError(f'{where}: {key} holds non-finite values (NaN or inf): '
                                        f'{np.asarray(inst[key]).ravel()[:6].tolist()}')
        if ann_k is not None and ann_k != num_sigmas:
            raise DataError(f'CocoMetric: {self.ann_file} annotates {ann_k} keypoints per instance but '
                            f'dataset_meta has {num_sigmas} sigmas')
        if self.coco_data is None:
            return
        self._check_image_ids(set(by_image))

    def _check_image_ids(self, img_ids: set[int]) -> None:
        unknown = sorted(img_ids - {img['id'] for img in self.coco_data['images']})
        if unknown:
            raise DataError(f'CocoMetric: predictions for image ids not in {self.ann_file}: '
                            f'{unknown[:10]}{" ..." if len(unknown) > 10 else ""}')

    def _instance_score(self, inst: dict) -> Any:
        scores = inst['keypoint_scores']
        if self.score_mode == 'bbox':
            return inst['bbox_score']
        if self.score_mode == 'keypoint':
            return np.mean(scores)
        if self.score_mode == 'bbox_rle':
            return float(inst['bbox_score'] + np.mean(scores) + np.max(scores))
        valid = scores[scores > self.keypoint_score_thr].astype(np.float64)
        # a sequential float64 sum (cumsum) like MMPose's loop (which promotes to float64 with numpy 1.x)
        mean = valid.cumsum()[-1] / len(valid) if len(valid) else 0.0
        return inst['bbox_score'] * mean

    def _rescore_and_nms(self, instances: list[dict], sigmas: np.ndarray) -> list[dict]:
        for inst in instances:
            inst['keypoints'] = np.concatenate(
                [inst['keypoints'], np.asarray(inst['keypoint_scores'])[:, None]], axis=-1)
            inst['keypoint_scores'] = np.asarray(inst['keypoint_scores'])
            inst['score'] = self._instance_score(inst)
        if self.nms_mode == 'none':
            return instances
        nms = oks_nms if self.nms_mode == 'oks_nms' else soft_oks_nms
        return [instances[i] for i in nms(instances, self.nms_thr, sigmas=sigmas)]

    @staticmethod
    def _to_coco(inst: dict) -> dict:
        res = {'image_id': inst['img_id'], 'category_id': inst['category_id'],
               'keypoints': np.asarray(inst['keypoints']).reshape(-1).tolist(), 'score': float(inst['score'])}
        if 'bbox' in inst:
            res['bbox'] = np.asarray(inst['bbox']).tolist()
        return res
