"""COCO keypoint AP/AR with pycocotools, giving the numbers xtcocotools (what MMPose uses) gives.

xtcocotools ships no numpy-2 wheels, so evaluation runs on pycocotools' ``COCOeval`` with three
adjustments that make it behave like ``xtcocotools.cocoeval.COCOeval(gt, dt, 'keypoints', sigmas,
use_area)``:

* a ground-truth instance is ignored when none of its keypoints has visibility > 0 (xtcocotools
  counts them; pycocotools reads ``num_keypoints``, so the evaluation copy stores that count);
* ``use_area=False`` replaces every ground-truth area by ``0.53 * bbox_w * bbox_h`` (xtcocotools does
  so both in the OKS scale and in the area ranges);
* predictions whose keypoint scores are all <= 0 are dropped before matching.

pycocotools also treats a ground-truth id of 0 as "unmatched"; ids are shifted to start at 1 in the
evaluation copy when the file uses ids <= 0.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from collections.abc import Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from datasets.annotation_checks import check_unique_ids, keypoint_array
from utils.errors import DataError

STATS_NAMES = ('AP', 'AP .5', 'AP .75', 'AP (M)', 'AP (L)', 'AR', 'AR .5', 'AR .75', 'AR (M)', 'AR (L)')


class AnnotationFileError(DataError):
    """A COCO annotation file that cannot be used: missing, not JSON, or lacking a field."""


def _require(cond: bool, path: str, where: str, expected: str) -> None:
    if not cond:
        raise AnnotationFileError(f'{path}: {where}: expected {expected}')


def load_coco_annotations(path: str | os.PathLike, require_annotations: bool = True) -> dict:
    """Read and check a COCO keypoint annotation file.

    Args:
        path: the JSON file.
        require_annotations: whether ``annotations`` must be present (not for format-only runs).

    Returns:
        The parsed dict (``images``, ``annotations``, ``categories``); ``null`` coordinates of unlabelled
        keypoints read as 0.

    Raises:
        AnnotationFileError: naming the file and the missing or malformed field.
        DataError: repeated image or annotation ids, or a labelled keypoint (v > 0) without numeric x
            and y (``datasets.annotation_checks``), naming the file and entry.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise AnnotationFileError(f'{path}: annotation file not found')
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationFileError(f'{path}: not a valid JSON file ({e})') from None
    _require(isinstance(data, dict), path, 'top level', 'a JSON object with "images" and "annotations"')
    _require(isinstance(data.get('images'), list), path, '"images"', 'a list of {"id", ...}')
    for i, img in enumerate(data['images']):
        _require(isinstance(img, dict) and 'id' in img, path, f'images[{i}]', 'an object with "id"')
    check_unique_ids(path, 'images', (img['id'] for img in data['images']))
    data.setdefault('categories', [{'id': 1, 'name': 'person'}])
    _require(isinstance(data['categories'], list), path, '"categories"', 'a list of {"id", "name"}')
    if 'annotations' not in data:
        _require(not require_annotations, path, '"annotations"',
                 'ground-truth annotations (needed unless format_only=True)')
        return data
    _require(isinstance(data['annotations'], list), path, '"annotations"', 'a list')
    num_values = None
    for i, ann in enumerate(data['annotations']):
        where = f'annotations[{i}]'
        _require(isinstance(ann, dict), path, where, 'an object')
        for key in ('id', 'image_id', 'category_id', 'keypoints', 'bbox'):
            _require(key in ann, path, f'{where}.{key}', 'this field to be present')
        kpts = ann['keypoints']
        _require(isinstance(kpts, list) and len(kpts) % 3 == 0 and len(kpts) > 0, path,
                 f'{where}.keypoints', 'a list of K*3 numbers (x, y, visibility)')
        _require(num_values is None or len(kpts) == num_values, path, f'{where}.keypoints',
                 f'{num_values} numbers like the annotations before it, got {len(kpts)}')
        num_values = len(kpts)
        _require(isinstance(ann['bbox'], list) and len(ann['bbox']) == 4, path, f'{where}.bbox',
                 '[x, y, w, h]')
        checked = keypoint_array(kpts, num_values // 3, f'{path}: {where} (id {ann["id"]}).keypoints')
        if None in kpts:  # unlabelled keypoints without coordinates: pycocotools needs numbers
            ann['keypoints'] = checked.ravel().tolist()
    check_unique_ids(path, 'annotations', (ann['id'] for ann in data['annotations']))
    return data


def num_annotated_keypoints(data: dict) -> int | None:
    """K of the file's annotations (None when it has none)."""
    anns = data.get('annotations') or []
    return len(anns[0]['keypoints']) // 3 if anns else None


def _eval_ground_truth(data: dict, use_area: bool, path: str) -> COCO:
    """A pycocotools COCO over an adjusted copy of ``data`` (see the module docstring)."""
    anns = copy.deepcopy(data['annotations'])
    min_id = min((ann['id'] for ann in anns), default=1)
    shift = 1 - min_id if min_id <= 0 else 0
    for i, ann in enumerate(anns):
        ann['id'] += shift
        ann.setdefault('iscrowd', 0)
        ann['num_keypoints'] = int(np.count_nonzero(np.asarray(ann['keypoints'][2::3]) > 0))
        if not use_area:
            ann['area'] = ann['bbox'][2] * ann['bbox'][3] * 0.53
        elif 'area' not in ann:
            raise AnnotationFileError(f'{path}: annotations[{i}].area: expected this field with '
                                      'use_area=True (set use_area=False to use 0.53 * bbox area)')
    coco = COCO()
    coco.dataset = {'images': data['images'], 'categories': data['categories'], 'annotations': anns}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class _XtCocoEval(COCOeval):
    """pycocotools' COCOeval that drops predictions with no keypoint score > 0, like xtcocotools."""

    def _prepare(self) -> None:
        super()._prepare()
        for key, dts in self._dts.items():
            self._dts[key] = [dt for dt in dts if np.count_nonzero(np.asarray(dt['keypoints'][2::3]) > 0)]


def evaluate_keypoints(data: dict, results: Sequence[dict], sigmas: np.ndarray, use_area: bool = True,
                       path: str = '<annotations>') -> dict[str, float]:
    """COCO keypoint AP/AR of ``results`` against the annotations ``data``.

    Args:
        data: a checked annotation dict (:func:`load_coco_annotations`).
        results: COCO results: ``{'image_id', 'category_id', 'keypoints': [x, y, score] * K,
            'score'}`` and optionally ``'bbox'`` [x, y, w, h] (then its area is the result's area).
            Must not be empty; its image ids must be in ``data``.
        sigmas: (K,) OKS sigmas.
        use_area: use the annotations' ``area`` (True) or 0.53 * bbox area (False).
        path: the annotation file's name, for errors.

    Returns:
        ``{'AP', 'AP .5', 'AP .75', 'AP (M)', 'AP (L)', 'AR', ...}`` in [0, 1]; -1 where a range has no
        ground truth (COCO API convention).
    """
    gt = _eval_ground_truth(data, use_area, path)
    res = [dict(r) for r in results]  # loadRes adds fields to the dicts it gets
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(res)
        coco_eval = _XtCocoEval(gt, dt, 'keypoints')
        coco_eval.params.kpt_oks_sigmas = np.asarray(sigmas)
        coco_eval.params.useSegm = None
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return {name: float(value) for name, value in zip(STATS_NAMES, coco_eval.stats)}
