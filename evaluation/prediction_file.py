"""The predictions file that ``val.py --dump`` writes and ``tools/eval_predictions.py`` reads.

Format (JSON, one list entry per person instance, before rescoring and OKS NMS, so the file evaluates
to exactly the metrics of the run that wrote it)::

    [{"img_id": 785,                       # image id of the annotation file (integer)
      "id": 442619,                        # instance id, unique per image (integer; de-duplicated by it)
      "category_id": 1,                    # optional, default 1
      "keypoints": [[x, y], ...],          # K keypoints in original-image pixels
      "keypoint_scores": [s, ...],         # K scores
      "bbox": [x, y, w, h],                # optional: the person box, xywh image pixels
      "bbox_score": 1.0,                   # optional, default 1 (the detector's score)
      "area": 12345.6},                    # optional: instance area for OKS NMS (padded box w * h),
     ...]                                  #   taken from the keypoints' extent when absent

``bbox`` is given for every entry or for none. :func:`read_predictions` also accepts COCO keypoint results
(``[{"image_id", "category_id", "keypoints": [x, y, v] * K, "score"}, ...]``, e.g. the
``outfile_prefix.keypoints.json`` of ``CocoMetric``): those are final, already rescored and reduced.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from utils.errors import DataError
from utils.output_files import write_text_atomic

RAW = 'raw'
COCO_RESULTS = 'coco_results'


class PredictionFileError(DataError):
    """A predictions file that is missing, not JSON, or has a malformed entry (the message names it)."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_predictions(instances: Sequence[dict], path: str | os.PathLike) -> None:
    """Write per-instance records (``evaluation.coco_metric.batch_to_instances`` format: keypoints
    (K, 2) image px, keypoint_scores (K,), bbox (4,) xywh, ...) in the format above, atomically."""
    items = [{k: _jsonable(v) for k, v in inst.items()} for inst in instances]
    write_text_atomic(path, json.dumps(items))


def _field(path: str, i: int, inst: dict, key: str, shape: tuple, default=None) -> np.ndarray:
    if key not in inst:
        if default is None:
            raise PredictionFileError(f'{path}: predictions[{i}].{key}: missing')
        return np.asarray(default, dtype=np.float32)
    try:
        value = np.asarray(inst[key], dtype=np.float32)
    except (TypeError, ValueError):
        raise PredictionFileError(f'{path}: predictions[{i}].{key}: expected numbers, '
                                  f'got {inst[key]!r}') from None
    if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
        want = 'x'.join('K' if s is None else str(s) for s in shape) or 'a number'
        raise PredictionFileError(f'{path}: predictions[{i}].{key}: expected shape {want}, got '
                                  f'{list(value.shape)}')
    if not np.isfinite(value).all():
        raise PredictionFileError(f'{path}: predictions[{i}].{key}: non-finite values (NaN or inf) are not '
                                  f'predictions: {value.ravel()[:6].tolist()}')
    return value


def _integer(path: str, i: int, inst: dict, key: str) -> int:
    if not isinstance(inst.get(key), int) or isinstance(inst.get(key), bool):
        raise PredictionFileError(f'{path}: predictions[{i}].{key}: expected an integer, got '
                                  f'{inst.get(key)!r}')
    return inst[key]


def _raw_record(path: str, i: int, inst: dict) -> dict:
    kpts = _field(path, i, inst, 'keypoints', (None, 2))
    rec = dict(img_id=_integer(path, i, inst, 'img_id'), id=_integer(path, i, inst, 'id'),
               category_id=int(inst.get('category_id', 1)), keypoints=kpts,
               keypoint_scores=_field(path, i, inst, 'keypoint_scores', (len(kpts),)),
               bbox_score=_field(path, i, inst, 'bbox_score', (), default=1.0)[()])
    if 'bbox' in inst:
        rec['bbox'] = _field(path, i, inst, 'bbox', (4,))
    if 'area' in inst:
        rec['area'] = _field(path, i, inst, 'area', ())[()]
    return rec


def _coco_record(path: str, i: int, inst: dict) -> dict:
    kpts = _field(path, i, inst, 'keypoints', (None,))
    if len(kpts) % 3:
        raise PredictionFileError(f'{path}: predictions[{i}].keypoints: expected x, y, score per keypoint '
                                  f'(a multiple of 3 numbers), got {len(kpts)}')
    rec = dict(image_id=_integer(path, i, inst, 'image_id'), category_id=int(inst.get('category_id', 1)),
               keypoints=kpts.tolist(), score=float(_field(path, i, inst, 'score', ())))
    if 'bbox' in inst:
        rec['bbox'] = _field(path, i, inst, 'bbox', (4,)).tolist()
    return rec


def read_predictions(path: str | os.PathLike) -> tuple[str, list[dict]]:
    """Read a predictions file: ``(RAW, per-instance records)`` for this module's format (values float32,
    as the model produced them, so numbers match an in-loop evaluation) or ``(COCO_RESULTS, results)`` for
    COCO keypoint results. The kind is told from the first entry (``img_id`` vs ``image_id``).

    Raises:
        PredictionFileError: missing file, invalid JSON, an empty list, or a malformed entry (named by
            its index and key).
    """
    path = os.fspath(path)
    try:
        with open(path) as f:
            items = json.load(f)
    except FileNotFoundError:
        raise PredictionFileError(f'{path}: predictions file not found') from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PredictionFileError(f'{path}: not a valid JSON file ({e})') from None
    if not isinstance(items, list):
        raise PredictionFileError(f'{path}: expected a JSON list of instances, got {type(items).__name__}')
    if not items:
        raise PredictionFileError(f'{path}: no predictions to evaluate')
    for i, inst in enumerate(items):
        if not isinstance(inst, dict):
            raise PredictionFileError(f'{path}: predictions[{i}]: expected an object')
    kind = COCO_RESULTS if 'image_id' in items[0] and 'img_id' not in items[0] else RAW
    records = [(_coco_record if kind == COCO_RESULTS else _raw_record)(path, i, inst)
               for i, inst in enumerate(items)]
    if len({'bbox' in r for r in records}) > 1:
        raise PredictionFileError(f'{path}: "bbox" is given for some predictions but not for others')
    return kind, records
