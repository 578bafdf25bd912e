"""CocoMetric and OKS NMS give MMPose 1.3.2's numbers; bad input gives clear errors.

Reference numbers (EXPECTED, NMS_KEEP) were produced once with upstream MMPose 1.3.2 (xtcocotools
1.14.3, numpy 1.26) in the reference venv: the predictions of ``make_predictions(test_coco.json)``
were exported to JSON (float32 values, exact) and fed, one top-down sample per instance
(pred_instances.keypoints/keypoint_scores/bboxes/bbox_scores, gt_instances.bbox_scales), to
``mmpose.evaluation.CocoMetric(ann_file=test_coco.json, **VARIANTS[name])`` with
``dataset_meta = {'num_keypoints': 17, 'sigmas': COCO_SIGMAS, ...}``; the NMS keep-lists come from
``mmpose.evaluation.functional.oks_nms / soft_oks_nms`` on ``make_nms_instances()``.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.coco_eval import AnnotationFileError
from evaluation.coco_metric import CocoMetric
from evaluation.nms import oks_nms, soft_oks_nms
from tests.conftest import COCO_ANN, needs_coco
from utils.registry import METRICS

COCO_SIGMAS = np.array([.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107,
                        .087, .087, .089, .089], dtype=np.float32)
META = {'dataset_name': 'coco', 'num_keypoints': 17, 'sigmas': COCO_SIGMAS}


def make_predictions(ann_path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic top-down predictions around the ground truth of ``ann_path``.

    Per annotation: keypoints with per-instance noise (0 to 8 % of the box size), random keypoint
    scores, box scores from a small set (ties on purpose); sometimes a near-duplicate under a new
    id (for NMS) and an exact duplicate under the same id (for de-duplication). Per image: false
    positives (25 in one image, beyond the 20-per-image cap). One instance has all scores 0.
    Returns arrays for N instances: keypoints (N, 17, 2), keypoint_scores (N, 17), img_id, id,
    category_id (N,), bbox (N, 4) xyxy, bbox_score (N,), bbox_scale (N, 2).
    """
    data = json.loads(Path(ann_path).read_text())
    rng = np.random.default_rng(seed)
    rows = []
    next_id = 10_000_000
    for ann in data['annotations']:
        x, y, w, h = ann['bbox']
        xy = np.array(ann['keypoints'], dtype=np.float64).reshape(-1, 3)[:, :2]
        kpts = xy + rng.normal(0.0, rng.uniform(0.0, 0.08) * max(w, h), xy.shape)
        row = dict(img_id=ann['image_id'], id=ann['id'], keypoints=kpts,
                   keypoint_scores=rng.uniform(0, 1, 17), bbox=[x, y, x + w, y + h],
                   bbox_score=float(rng.choice([1.0, 0.9, 0.75, 0.5])), bbox_scale=[w * 1.25, h * 1.25])
        rows.append(row)
        if rng.random() < 0.5:
            rows.append(dict(row, id=next_id, keypoints=kpts + rng.normal(0, 1.0, kpts.shape),
                             keypoint_scores=row['keypoint_scores'] * 0.9))
            next_id += 1
        if rng.random() < 0.3:
            rows.append(dict(row))
    for img in data['images']:
        for _ in range(25 if img['id'] == 196141 else 3):
            w, h = rng.uniform(20, 200, 2)
            x, y = rng.uniform(0, img['width'] - w), rng.uniform(0, img['height'] - h)
            rows.append(dict(img_id=img['id'], id=next_id,
                             keypoints=rng.uniform([x, y], [x + w, y + h], (17, 2)),
                             keypoint_scores=rng.uniform(0, 0.6, 17), bbox=[x, y, x + w, y + h],
                             bbox_score=float(rng.uniform(0.1, 0.9)), bbox_scale=[w * 1.25, h * 1.25]))
            next_id += 1
    rows.append(dict(rows[0], id=next_id, keypoint_scores=np.zeros(17)))
    rows = [rows[i] for i in rng.permutation(len(rows))]
    return {
        'keypoints': np.array([r['keypoints'] for r in rows], dtype=np.float32),
        'keypoint_scores': np.array([r['keypoint_scores'] for r in rows], dtype=np.float32),
        'img_id': np.array([r['img_id'] for r in rows], dtype=np.int64),
        'id': np.array([r['id'] for r in rows], dtype=np.int64),
        'category_id': np.ones(len(rows), dtype=np.int64),
        'bbox': np.array([r['bbox'] for r in rows], dtype=np.float32),
        'bbox_score': np.array([r['bbox_score'] for r in rows], dtype=np.float32),
        'bbox_scale': np.array([r['bbox_scale'] for r in rows], dtype=np.float32),
    }


def make_nms_instances(seed: int = 1) -> list[dict]:
    """12 instances in one image: 4 people, each predicted 3 times with growing noise."""
    rng = np.random.default_rng(seed)
    instances = []
    for _ in range(4):
        base = rng.uniform(0, 300, (17, 2))
        for noise in (0.5, 3.0, 12.0):
            kpts = np.concatenate([base + rng.normal(0, noise, (17, 2)), rng.uniform(0, 1, (17, 1))], axis=1)
            instances.append(dict(keypoints=kpts.astype(np.float32), score=np.float32(rng.uniform(0.2, 1.0)),
                                  area=np.float32(rng.uniform(2000, 20000))))
    return instances


def batches(preds: dict[str, np.ndarray], batch_size: int = 8):
    """(preds, meta) batches as the model and collate produce them (meta as tensors)."""
    for s in range(0, len(preds['id']), batch_size):
        part = {k: v[s:s + batch_size] for k, v in preds.items()}
        yield ({'keypoints': part['keypoints'], 'keypoint_scores': part['keypoint_scores']},
               {k: torch.from_numpy(v) for k, v in part.items() if k not in ('keypoints', 'keypoint_scores')})


def run_metric(preds: dict[str, np.ndarray], **kwargs) -> dict[str, float]:
    metric = CocoMetric(ann_file=str(COCO_ANN), **kwargs)
    metric.dataset_meta = META
    for p, m in batches(preds):
        metric.process(p, m)
    return metric.evaluate()


VARIANTS = {
    f'{nms}/{score}': dict(nms_mode=nms, score_mode=score)
    for nms in ('oks_nms', 'soft_oks_nms', 'none')
    for score in ('bbox', 'bbox_keypoint', 'bbox_rle', 'keypoint')
}
VARIANTS.update({
    'oks_nms/bbox_keypoint/no_area': dict(nms_mode='oks_nms', score_mode='bbox_keypoint', use_area=False),
    'soft_oks_nms/bbox/no_area': dict(nms_mode='soft_oks_nms', score_mode='bbox', use_area=False),
    'oks_nms/bbox_keypoint/kpt_thr0.5': dict(nms_mode='oks_nms', score_mode='bbox_keypoint',
                                             keypoint_score_thr=0.5),
    'none/bbox_keypoint/kpt_thr0.9': dict(nms_mode='none', score_mode='bbox_keypoint',
                                          keypoint_score_thr=0.9),
    'oks_nms/bbox_rle/nms_thr0.5': dict(nms_mode='oks_nms', score_mode='bbox_rle', nms_thr=0.5),
    'soft_oks_nms/keypoint/nms_thr0.3': dict(nms_mode='soft_oks_nms', score_mode='keypoint', nms_thr=0.3),
})

# AP, AP .5, AP .75, AP (M), AP (L), AR, AR .5, AR .75, AR (M), AR (L) from upstream (see module docstring)
EXPECTED: dict[str, tuple[float, ...]] = {
    'oks_nms/bbox': (
        0.11546440358321547, 0.36963696369636967, 0.08642149929278642, 0.26732673267326734,
        0.09902365236523653, 0.275, 0.6666666666666666, 0.25,
        0.2800000000000001, 0.27142857142857146,
    ),
    'oks_nms/bbox_keypoint': (
        0.1448114097123998, 0.5145921735030645, 0.09405940594059406, 0.2871287128712871,
        0.13638163816381638, 0.3, 0.75, 0.25,
        0.2800000000000001, 0.3142857142857143,
    ),
    'oks_nms/bbox_rle': (
        0.14820790870295822, 0.5625491120540627, 0.08789032749428789, 0.2871287128712871,
        0.12825082508250824, 0.3, 0.75, 0.25,
        0.2800000000000001, 0.3142857142857143,
    ),
    'oks_nms/keypoint': (
        0.11926838837729928, 0.4446790832929447, 0.0576957695769577, 0.2871287128712871,
        0.11511293986541511, 0.3, 0.75, 0.25,
        0.2800000000000001, 0.3142857142857143,
    ),
    'soft_oks_nms/bbox': (
        0.0965978337465083, 0.3373586206546922, 0.06287128712871287, 0.26732673267326734,
        0.09268404573250848, 0.3, 0.75, 0.25,
        0.2800000000000001, 0.3142857142857143,
    ),
    'soft_oks_nms/bbox_keypoint': (
        0.10492457516428334, 0.38046141456250887, 0.06640363284448746, 0.2871287128712871,
        0.09288110953952537, 0.3, 0.75, 0.25,
        0.2800000000000001, 0.3142857142857143,
    ),
    'soft_oks_nms/bbox_rle': (
        0.10667194644480608, 0.4022363774839022, 0.06381562526000499, 0.2871287128712871,
        0.08777064519638778, 0.3, 0.75, 0.25,
        0.2800000000000001, 0.3142857142857143,
    ),
    'soft_oks_nms/keypoint': (
        0.10247007783485115, 0.3488796248045857, 0.05280528052805281, 0.2871287128712871,
        0.08026151879893872, 0.3, 0.75, 0.25,
        0.2800000000000001, 0.3142857142857143,
    ),
    'none/bbox': (
        0.08392909657098434, 0.2974525713440909, 0.05394881593422499, 0.2651265126512651,
        0.0803078081087461, 0.3, 0.75, 0.25,
        0.2800000000000001, 0.3142857142857143,
    ),
    'none/bbox_keypoint': (
        0.10381555737991383, 0.3749197996722749, 0.0657001414427157, 0.28316831683168314,
        0.09288110953952537, 0.3, 0.75, 0.25,
        0.2800000000000001, 0.3142857142857143,
    ),
    'none/bbox_rle': (
        0.10511920364968827, 0.39476052868444733, 0.06294200848656292, 0.28316831683168314,
        0.08777064519638778, 0.3, 0.75, 0.25,
        0.2800000000000001, 0.3142857142857143,
    ),
    'none/keypoint': (
        0.10147650479333647, 0.34349607374530555, 0.05212245362467281, 0.28316831683168314,
        0.08026151879893872, 0.3, 0.75, 0.25,
        0.2800000000000001, 0.3142857142857143,
    ),
    'oks_nms/bbox_keypoint/no_area': (
        0.21854785478547853, 0.6474304573314474, 0.07623762376237624, 0.3366336633663366,
        0.2527769919849127, 0.35833333333333334, 0.8333333333333334, 0.16666666666666666,
        0.33333333333333337, 0.36666666666666664,
    ),
    'soft_oks_nms/bbox/no_area': (
        0.1580697804803522, 0.49073478776449075, 0.04950495049504951, 0.3366336633663366,
        0.18822174525144822, 0.35833333333333334, 0.8333333333333334, 0.16666666666666666,
        0.33333333333333337, 0.36666666666666664,
    ),
    'oks_nms/bbox_keypoint/kpt_thr0.5': (
        0.14369107587450472, 0.538799143072202, 0.0858085808580858, 0.28316831683168314,
        0.1428278542139928, 0.3, 0.75, 0.25,
        0.2800000000000001, 0.3142857142857143,
    ),
    'none/bbox_keypoint/kpt_thr0.9': (
        0.08675433231191439, 0.4180823345492443, 0.032967621086432974, 0.10318246110325317,
        0.09834415584415584, 0.3, 0.75, 0.25,
        0.2800000000000001, 0.3142857142857143,
    ),
    'oks_nms/bbox_rle/nms_thr0.5': (
        0.14820790870295822, 0.5625491120540627, 0.08789032749428789, 0.2871287128712871,
        0.12825082508250824, 0.3, 0.75, 0.25,
        0.2800000000000001, 0.3142857142857143,
    ),
    'soft_oks_nms/keypoint/nms_thr0.3': (
        0.10247007783485115, 0.3488796248045857, 0.05280528052805281, 0.2871287128712871,
        0.08026151879893872, 0.3, 0.75, 0.25,
        0.2800000000000001, 0.3142857142857143,
    ),
}
NMS_KEEP: dict[str, list[int]] = {  # NMS function / thr [/ options] -> kept indices, upstream
    'oks_nms/0.3': [9, 6, 2, 5],
    'soft_oks_nms/0.3': [9, 6, 2, 5, 1, 3, 11, 8, 10, 4, 7, 0],
    'oks_nms/0.5': [9, 6, 2, 1, 5, 3],
    'soft_oks_nms/0.5': [9, 6, 2, 5, 1, 11, 3, 8, 10, 7, 4, 0],
    'oks_nms/0.9': [9, 11, 6, 2, 1, 5, 3, 8],
    'soft_oks_nms/0.9': [9, 6, 2, 5, 11, 1, 3, 8, 10, 7, 4, 0],
    'soft_oks_nms/0.9/max5': [9, 6, 2, 5, 11],
    'oks_nms/0.5/vis0.5': [9, 11, 6, 2, 5, 3],
    'oks_nms/0.9/coco_default': [9, 11, 6, 2, 1, 5, 3, 8],
}


def ground_truth_predictions(ann_path: Path) -> dict[str, np.ndarray]:
    """The annotations with a visible keypoint (the ones a top-down val set keeps), as predictions."""
    anns = [a for a in json.loads(Path(ann_path).read_text())['annotations'] if max(a['keypoints'][2::3]) > 0]
    boxes = np.array([a['bbox'] for a in anns], dtype=np.float32)
    return {
        'keypoints': np.array([np.reshape(a['keypoints'], (-1, 3))[:, :2] for a in anns], dtype=np.float32),
        'keypoint_scores': np.ones((len(anns), 17), dtype=np.float32),
        'img_id': np.array([a['image_id'] for a in anns]), 'id': np.array([a['id'] for a in anns]),
        'category_id': np.ones(len(anns), dtype=np.int64),
        'bbox': np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1),
        'bbox_score': np.ones(len(anns), dtype=np.float32), 'bbox_scale': boxes[:, 2:] * 1.25,
    }


@needs_coco
@pytest.mark.parametrize('nms_mode', ['oks_nms', 'soft_oks_nms', 'none'])
def test_ground_truth_as_predictions_gives_ap_1(nms_mode: str) -> None:
    metrics = run_metric(ground_truth_predictions(COCO_ANN), nms_mode=nms_mode)
    assert set(metrics) == {f'coco/{k}' for k in ('AP', 'AP .5', 'AP .75', 'AP (M)', 'AP (L)', 'AR', 'AR .5',
                                                    'AR .75', 'AR (M)', 'AR (L)')}
    assert all(v == pytest.approx(1.0) for v in metrics.values()), metrics


@needs_coco
@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_numbers_equal_mmpose(name: str) -> None:
    metrics = run_metric(make_predictions(COCO_ANN), **VARIANTS[name])
    got = tuple(metrics[f'coco/{k}'] for k in ('AP', 'AP .5', 'AP .75', 'AP (M)', 'AP (L)', 'AR', 'AR .5',
                                                'AR .75', 'AR (M)', 'AR (L)'))
    assert got == pytest.approx(EXPECTED[name], abs=1e-12)


@pytest.mark.parametrize('key', sorted(NMS_KEEP))
def test_nms_keep_lists_equal_mmpose(key: str) -> None:
    parts = key.split('/')
    kwargs = {'sigmas': None if 'coco_default' in parts else COCO_SIGMAS}
    if 'max5' in parts:
        kwargs['max_dets'] = 5
    if 'vis0.5' in parts:
        kwargs['vis_thr'] = 0.5
    nms = oks_nms if parts[0] == 'oks_nms' else soft_oks_nms
    assert nms(make_nms_instances(), float(parts[1]), **kwargs).tolist() == NMS_KEEP[key]


def test_nms_empty_input() -> None:
    assert oks_nms([], 0.9).tolist() == [] and soft_oks_nms([], 0.9).tolist() == []


@needs_coco
def test_results_file_and_format_only(tmp_path: Path) -> None:
    preds = make_predictions(COCO_ANN)
    metrics = run_metric(preds, nms_mode='none', outfile_prefix=str(tmp_path / 'res'))
    results = json.loads((tmp_path / 'res.keypoints.json').read_text())
    unique = {(int(i), int(j)) for i, j in zip(preds['img_id'], preds['id'])}
    assert len(results) == len(unique)  # same-id duplicates removed, nothing else with nms_mode='none'
    assert set(results[0]) == {'bbox', 'category_id', 'image_id', 'keypoints', 'score'}
    assert len(results[0]['keypoints']) == 17 * 3 and metrics['coco/AP'] > 0
    metric = CocoMetric(ann_file=str(COCO_ANN), format_only=True, outfile_prefix=str(tmp_path / 'only'))
    metric.dataset_meta = META
    for p, m in batches(preds):
        metric.process(p, m)
    assert metric.evaluate() == {}
    assert json.loads((tmp_path / 'only.keypoints.json').read_text()) == metric.coco_results


@needs_coco
def test_converters_with_the_same_permutation_change_nothing() -> None:
    perm = list(np.random.default_rng(3).permutation(17))
    mapping = [(int(p), i) for i, p in enumerate(perm)]
    conv = dict(num_keypoints=17, mapping=mapping)
    preds = make_predictions(COCO_ANN)
    assert run_metric(preds, pred_converter=conv, gt_converter=conv) == run_metric(preds)
    assert run_metric(preds, pred_converter=conv)['coco/AP'] != run_metric(preds)['coco/AP']


@needs_coco
def test_registry_build() -> None:
    metric = METRICS.build(dict(type='CocoMetric', ann_file=str(COCO_ANN), score_mode='bbox'))
    assert isinstance(metric, CocoMetric) and metric.score_mode == 'bbox'


# ---------------------------------------------------------------- errors


def _one(preds: dict[str, np.ndarray], **changes) -> dict[str, np.ndarray]:
    out = {k: v[:1].copy() for k, v in preds.items()}
    out.update(changes)
    return out


@needs_coco
def test_error_unknown_image_id() -> None:
    preds = _one(make_predictions(COCO_ANN), img_id=np.array([123456789]))
    with pytest.raises(ValueError, match=r'image ids not in .*test_coco\.json: \[123456789\]'):
        run_metric(preds)


@needs_coco
def test_error_keypoint_count_mismatch() -> None:
    preds = make_predictions(COCO_ANN)
    preds = _one(preds, keypoints=preds['keypoints'][:1, :14],
                 keypoint_scores=preds['keypoint_scores'][:1, :14])
    meta14 = dict(META, num_keypoints=14, sigmas=COCO_SIGMAS[:14])
    metric = CocoMetric(ann_file=str(COCO_ANN))
    metric.dataset_meta = meta14
    for p, m in batches(preds):
        metric.process(p, m)
    with pytest.raises(ValueError, match=r'14 keypoints but .*test_coco\.json annotates 17'):
        metric.evaluate()
    with pytest.raises(ValueError, match=r'\(img_id \d+, id \d+\) has 14 keypoints but .*test_coco\.json '
                                         'annotates 17'):
        run_metric(preds)


@needs_coco
def test_error_empty_and_missing_meta() -> None:
    metric = CocoMetric(ann_file=str(COCO_ANN))
    metric.dataset_meta = META
    with pytest.raises(ValueError, match='no predictions to evaluate'):
        metric.evaluate()
    metric = CocoMetric(ann_file=str(COCO_ANN))
    for p, m in batches(make_predictions(COCO_ANN)):
        metric.process(p, m)
    with pytest.raises(ValueError, match='dataset_meta'):
        metric.evaluate()


def test_error_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='score_mode'):
        CocoMetric(ann_file=None, format_only=True, outfile_prefix='x', score_mode='max')
    with pytest.raises(ValueError, match='nms_mode'):
        CocoMetric(ann_file=None, format_only=True, outfile_prefix='x', nms_mode='nms')
    with pytest.raises(ValueError, match='outfile_prefix'):
        CocoMetric(ann_file=None, format_only=True)
    with pytest.raises(ValueError, match='ann_file is required'):
        CocoMetric()


@pytest.mark.parametrize('content, message', [
    (None, 'annotation file not found'),
    ('{"images": [', 'not a valid JSON file'),
    ('[]', 'top level'),
    ('{"images": [{"id": 1}]}', '"annotations"'),
    ('{"images": [{"id": 1}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, '
     '"bbox": [0, 0, 1, 1]}]}', r'annotations\[0\]\.keypoints'),
    ('{"images": [{"id": 1}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, '
     '"bbox": [0, 0, 1, 1], "keypoints": [1, 2]}]}', r'annotations\[0\]\.keypoints: expected a list of K\*3'),
    ('{"images": [{"file_name": "a.jpg"}], "annotations": []}', r'images\[0\]'),
])
def test_error_malformed_annotation_file(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / 'ann.json'
    if content is not None:
        path.write_text(content)
    with pytest.raises(AnnotationFileError, match=rf'ann\.json: .*{message}'):
        CocoMetric(ann_file=str(path))


def test_error_missing_area_with_use_area(tmp_path: Path) -> None:
    ann = {'images': [{'id': 1}], 'categories': [{'id': 1, 'name': 'person'}],
           'annotations': [{'id': 1, 'image_id': 1, 'category_id': 1, 'bbox': [0, 0, 50, 80],
                            'keypoints': [10, 10, 2] * 17}]}
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(ann))
    preds = {'keypoints': np.full((1, 17, 2), 10, np.float32),
             'keypoint_scores': np.ones((1, 17), np.float32)}
    meta = {'img_id': torch.tensor([1]), 'id': torch.tensor([1]), 'bbox': torch.tensor([[0., 0., 50., 80.]]),
            'bbox_score': torch.ones(1), 'bbox_scale': torch.tensor([[62.5, 100.]])}
    for use_area, ok in ((True, False), (False, True)):
        metric = CocoMetric(ann_file=str(path), use_area=use_area)
        metric.dataset_meta = META
        metric.process(preds, meta)
        if ok:
            assert metric.evaluate()['coco/AP'] == pytest.approx(1.0)
        else:
            with pytest.raises(AnnotationFileError, match=r"annotations\[0\]\.area.*use_area=False"):
                metric.evaluate()


# ---------------------------------------------------------------- tools/eval_predictions.py


def write_raw(preds: dict[str, np.ndarray], path: Path) -> Path:
    """RAW.json for tools/eval_predictions.py: the same instances as the batches above."""
    xywh = np.concatenate([preds['bbox'][:, :2], preds['bbox'][:, 2:] - preds['bbox'][:, :2]], axis=1)
    area = np.prod(preds['bbox_scale'], axis=1)
    items = [{'img_id': int(preds['img_id'][i]), 'id': int(preds['id'][i]), 'category_id': 1,
              'keypoints': preds['keypoints'][i].tolist(),
              'keypoint_scores': preds['keypoint_scores'][i].tolist(),
              'bbox': xywh[i].tolist(), 'bbox_score': float(preds['bbox_score'][i]), 'area': float(area[i])}
             for i in range(len(preds['id']))]
    path.write_text(json.dumps(items))
    return path


def _eval_tool(capsys, *argv: str) -> tuple[int, str, str]:
    from tools.eval_predictions import main
    from utils.cli import run_main

    with pytest.raises(SystemExit) as exit_info:
        run_main(main, list(argv))
    code = exit_info.value.code
    out = capsys.readouterr()
    return code, out.out, out.err


@needs_coco
@pytest.mark.parametrize('name, flags', [
    ('soft_oks_nms/bbox_rle', ['--nms-mode', 'soft_oks_nms', '--score-mode', 'bbox_rle']),
    ('oks_nms/bbox_keypoint/no_area', ['--no-use-area']),
    ('none/bbox_keypoint/kpt_thr0.9', ['--nms-mode', 'none', '--keypoint-score-thr', '0.9']),
    ('oks_nms/bbox_rle/nms_thr0.5', ['--score-mode', 'bbox_rle', '--nms-thr', '0.5']),
])
def test_eval_predictions_tool_equals_mmpose(tmp_path: Path, capsys, name: str, flags: list[str]) -> None:
    raw = write_raw(make_predictions(COCO_ANN), tmp_path / 'raw.json')
    code, out, _ = _eval_tool(capsys, '--ann-file', str(COCO_ANN), '--predictions', str(raw), *flags)
    assert code == 0 and len(out.strip().splitlines()) == 1
    metrics = json.loads(out)
    assert metrics['coco/AP'] == pytest.approx(EXPECTED[name][0], abs=1e-12)
    assert metrics['coco/AR (L)'] == pytest.approx(EXPECTED[name][9], abs=1e-12)


@needs_coco
def test_eval_predictions_tool_errors(tmp_path: Path, capsys) -> None:
    preds = make_predictions(COCO_ANN)
    raw = write_raw(preds, tmp_path / 'raw.json')
    items = json.loads(raw.read_text())
    cases = [
        ([dict(items[0], img_id=42)], r'image ids not in .*test_coco\.json: \[42\]'),
        ([dict(items[0], keypoints=items[0]['keypoints'][:14],
               keypoint_scores=items[0]['keypoint_scores'][:14])],
         r'bad\.json: predictions\[0\]\.keypoints: 14 keypoints but .*test_coco\.json annotates 17'),
        ([], r'bad\.json: no predictions to evaluate'),
        ([dict(items[0], keypoint_scores=[1.0])],
         r'bad\.json: predictions\[0\]\.keypoint_scores: expected shape 17'),
        ([{k: v for k, v in items[0].items() if k != 'id'}], r'bad\.json: predictions\[0\]\.id'),
        ({'a': 1}, r'bad\.json: expected a JSON list'),
    ]
    for content, message in cases:
        (tmp_path / 'bad.json').write_text(json.dumps(content))
        code, out, err = _eval_tool(capsys, '--ann-file', str(COCO_ANN), '--predictions',
                                    str(tmp_path / 'bad.json'))
        assert code == 2 and out == '' and 'Traceback' not in err
        assert re.search(message, err), err
    code, _, err = _eval_tool(capsys, '--ann-file', str(tmp_path / 'nope.json'), '--predictions', str(raw))
    assert code == 2 and re.search(r'--ann-file: .*nope\.json not found', err), err


@needs_coco
@pytest.mark.slow
def test_eval_predictions_cli(tmp_path: Path) -> None:
    raw = write_raw(make_predictions(COCO_ANN), tmp_path / 'raw.json')
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, 'tools/eval_predictions.py', '--ann-file', str(COCO_ANN),
                           '--predictions', str(raw), '--outfile-prefix', str(tmp_path / 'out')],
                          cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    expected_ap = EXPECTED['oks_nms/bbox_keypoint'][0]
    assert json.loads(proc.stdout)['coco/AP'] == pytest.approx(expected_ap, abs=1e-12)
    assert (tmp_path / 'out.keypoints.json').is_file()
