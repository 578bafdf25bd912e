"""COCO keypoint AP of saved per-instance predictions, without a model.

    python tools/eval_predictions.py --ann-file ANN.json --predictions RAW.json \
        [--score-mode bbox_keypoint] [--nms-mode oks_nms] [--nms-thr 0.9] [--keypoint-score-thr 0.2] \
        [--use-area | --no-use-area] [--metainfo configs/_base_/datasets/coco.py] \
        [--outfile-prefix PREFIX] [--cfg-options KEY=VALUE ...]

RAW.json is a list of top-down instances: ``{"img_id", "id", "category_id" (default 1),
"keypoints": [[x, y], ...] (image px), "keypoint_scores": [...], "bbox": [x, y, w, h] (optional),
"bbox_score" (default 1), "area" (optional; the OKS-NMS area, e.g. the padded box's w * h)}``.
Prints the metrics as one JSON line (``{"coco/AP": ..., ...}``). ``--cfg-options`` overrides
CocoMetric arguments (e.g. ``pred_converter=...``).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import argparse
import json

import numpy as np

from datasets.metainfo import parse_pose_metainfo
from evaluation.coco_eval import num_annotated_keypoints
from evaluation.coco_metric import NMS_MODES, SCORE_MODES, CocoMetric
from utils.cli import run_main
from utils.config import Config, add_cfg_options_argument, parse_cfg_options
from utils.errors import DataError


class PredictionFileError(DataError):
    """A predictions file that is missing, not JSON, or has a malformed entry."""


def _field(path: str, i: int, inst: dict, key: str, shape: tuple, default=None) -> np.ndarray | None:
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


def check_keypoint_count(path: str, records: list[dict], ann_file: str, num_keypoints: int | None) -> None:
    """Refuse the first record whose keypoint count differs from the annotation file's, naming both."""
    for i, rec in enumerate(records):
        if num_keypoints is not None and len(rec['keypoints']) != num_keypoints:
            raise PredictionFileError(f'{path}: predictions[{i}].keypoints: {len(rec["keypoints"])} '
                                      f'keypoints but {ann_file} annotates {num_keypoints} per instance')


def load_raw_predictions(path: str) -> list[dict]:
    """Per-instance records (``evaluation.coco_metric.batch_to_instances`` format) from RAW.json.

    Values become float32, as the model produces them, so numbers match an in-loop evaluation.
    """
    try:
        with open(path) as f:
            items = json.load(f)
    except FileNotFoundError:
        raise PredictionFileError(f'{path}: predictions file not found') from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PredictionFileError(f'{path}: not a valid JSON file ({e})') from None
    if not isinstance(items, list):
        raise PredictionFileError(f'{path}: expected a JSON list of instances')
    records = []
    for i, inst in enumerate(items):
        if not isinstance(inst, dict):
            raise PredictionFileError(f'{path}: predictions[{i}]: expected an object')
        for key in ('img_id', 'id'):
            if not isinstance(inst.get(key), int):
                raise PredictionFileError(f'{path}: predictions[{i}].{key}: expected an integer')
        kpts = _field(path, i, inst, 'keypoints', (None, 2))
        rec = dict(img_id=inst['img_id'], id=inst['id'], category_id=int(inst.get('category_id', 1)),
                   keypoints=kpts, keypoint_scores=_field(path, i, inst, 'keypoint_scores', (len(kpts),)),
                   bbox_score=_field(path, i, inst, 'bbox_score', (), default=1.0)[()])
        if 'bbox' in inst:
            rec['bbox'] = _field(path, i, inst, 'bbox', (4,))
        if 'area' in inst:
            rec['area'] = _field(path, i, inst, 'area', ())[()]
        records.append(rec)
    if len({'bbox' in r for r in records}) > 1:
        raise PredictionFileError(f'{path}: "bbox" is given for some predictions but not for others')
    return records


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--ann-file', required=True, help='COCO keypoint annotation JSON')
    parser.add_argument('--predictions', required=True, help='per-instance predictions JSON (see above)')
    parser.add_argument('--score-mode', default='bbox_keypoint', choices=SCORE_MODES)
    parser.add_argument('--nms-mode', default='oks_nms', choices=NMS_MODES)
    parser.add_argument('--nms-thr', type=float, default=0.9)
    parser.add_argument('--keypoint-score-thr', type=float, default=0.2)
    parser.add_argument('--use-area', action=argparse.BooleanOptionalAction, default=True,
                        help="use the annotations' area for OKS (--no-use-area: 0.53 * bbox area)")
    parser.add_argument('--metainfo', default='configs/_base_/datasets/coco.py',
                        help='dataset_info config giving the keypoints and OKS sigmas')
    parser.add_argument('--outfile-prefix', default=None, help='also write PREFIX.keypoints.json')
    add_cfg_options_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config(type='CocoMetric', ann_file=args.ann_file, score_mode=args.score_mode,
                 nms_mode=args.nms_mode, nms_thr=args.nms_thr, keypoint_score_thr=args.keypoint_score_thr,
                 use_area=args.use_area, outfile_prefix=args.outfile_prefix)
    cfg.merge_from_options(parse_cfg_options(args.cfg_options))
    metric = CocoMetric(**{k: v for k, v in cfg.to_dict().items() if k != 'type'})
    metric.dataset_meta = parse_pose_metainfo(dict(from_file=args.metainfo))
    metric.results = load_raw_predictions(args.predictions)
    if not metric.results:
        raise PredictionFileError(f'{args.predictions}: no predictions to evaluate')
    if metric.coco_data is not None and metric.pred_converter is None:
        check_keypoint_count(args.predictions, metric.results, args.ann_file,
                             num_annotated_keypoints(metric.coco_data))
    metrics = metric.evaluate()
    print(json.dumps(metrics))
    return 0


if __name__ == '__main__':
    run_main(main)
