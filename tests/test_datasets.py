"""Datasets: instance counts, detections, metainfo, combined/repeat wrappers, bad annotation input.

Reference numbers were produced with MMPose 1.3.2 on ../shared/data (see each test)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from datasets import build_dataset, parse_pose_metainfo
from datasets.metainfo import REPO_ROOT
from tests.conftest import COCO_DETS, aic_cfg, coco_cfg, combined_cfg, needs_coco, needs_data, write_tiny_coco

# MMPose 1.3.2: CocoDataset / AicDataset (top-down, GT boxes) on the shared test files.
COCO_IDS = [442619, 198196, 230195, 460541, 488308, 1717641, 1724673, 437295, 467657, 531914, 533949,
            543117]
AIC_IDS = [4, 5, 6, 7, 8, 9, 10, 11, 12]
# MMPose 1.3.2 with bbox_file=test_coco_det_AP_H_56.json: lengths for bbox_score_thr None/0.3/0.9.
DET_LENS = {None: 118, 0.3: 33, 0.9: 14}


@needs_data
def test_coco_and_aic_instances_match_mmpose():
    coco = build_dataset(coco_cfg())
    aic = build_dataset(aic_cfg())
    assert [coco.get_data_info(i)['id'] for i in range(len(coco))] == COCO_IDS
    assert [aic.get_data_info(i)['id'] for i in range(len(aic))] == AIC_IDS
    info = coco.get_data_info(3)  # MMPose: img 196141, ann 460541, area 17123.93, 15 keypoints
    assert info['img_id'] == 196141 and info['num_keypoints'] == 15
    np.testing.assert_allclose(info['bbox'], [[247.76, 74.23, 417.43, 375.01]], rtol=1e-6)
    assert info['area'] == pytest.approx(17123.93, rel=1e-6)
    assert info['keypoints'].shape == (1, 17, 2) and info['keypoints_visible'].shape == (1, 17)
    assert info['img_path'].endswith(os.path.join('coco', '000000196141.jpg'))
    assert aic.metainfo['num_keypoints'] == 14 and aic.get_data_info(0)['keypoints'].shape == (1, 14, 2)


@needs_coco
@pytest.mark.parametrize('thr', [None, 0.3, 0.9])
def test_detection_boxes_and_score_filter(thr):
    ds = build_dataset(coco_cfg(bbox_file=str(COCO_DETS), test_mode=True,
                                filter_cfg=dict(bbox_score_thr=thr) if thr else None))
    assert len(ds) == DET_LENS[thr]
    first = ds.get_data_info(0)
    np.testing.assert_allclose(first['bbox'], [[277.11832, 45.69967, 502.2096, 379.25995]], rtol=1e-5)
    assert first['bbox_score'][0] == pytest.approx(0.9999732, rel=1e-6)
    assert first['keypoints_visible'].min() == 1 and first['keypoints'].max() == 0


@needs_coco
def test_bbox_file_needs_test_mode():
    with pytest.raises(ValueError, match='test_mode'):
        build_dataset(coco_cfg(bbox_file='x.json'))


def test_coco_metainfo_flip_and_skeleton():
    meta = parse_pose_metainfo(dict(from_file='configs/_base_/datasets/coco.py'))
    assert meta['num_keypoints'] == 17 and meta['dataset_name'] == 'coco'
    assert meta['flip_indices'] == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    assert (2, 1) in meta['flip_pairs'] and len(meta['skeleton_links']) == 19
    assert meta['upper_body_ids'] == list(range(11)) and meta['lower_body_ids'] == list(range(11, 17))
    assert meta['keypoint_colors'].shape == (17, 3) and meta['skeleton_link_colors'].dtype == np.uint8
    assert meta['sigmas'][0] == pytest.approx(0.026) and meta['joint_weights'][9] == pytest.approx(1.5)


@needs_data
def test_metainfo_file_resolves_against_config_dir_and_repo_root_not_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a cwd where the relative path does not exist
    ds = build_dataset(coco_cfg(metainfo=dict(from_file='configs/_base_/datasets/coco.py')))
    assert ds.metainfo['num_keypoints'] == 17
    cfg_dir = REPO_ROOT / 'configs' / '_base_'
    ds = build_dataset(aic_cfg(metainfo=dict(from_file='datasets/aic.py')), cfg_dir=cfg_dir)
    assert ds.metainfo['dataset_name'] == 'aic'
    with pytest.raises(ValueError, match='"keypoints": expected 42 numbers'):  # 17-keypoint file, 14 joints
        build_dataset(coco_cfg(metainfo=dict(from_file='datasets/aic.py')), cfg_dir=cfg_dir)
    with pytest.raises(FileNotFoundError, match='nowhere.py'):
        build_dataset(coco_cfg(metainfo=dict(from_file='nowhere.py')), cfg_dir=cfg_dir)


@needs_data
def test_combined_and_repeat_lengths_and_aic_to_coco_mapping():
    comb = build_dataset(combined_cfg())
    assert len(comb) == 45 and comb.lens == [36, 9]  # MMPose: 3 x 12 COCO + 9 AIC
    assert comb.sample_info(12, np.random.default_rng(0))['id'] == COCO_IDS[0]  # the repeat wraps around
    info = comb.sample_info(36, np.random.default_rng(0))  # first AIC instance through KeypointConverter
    kpts, vis = info['keypoints'][0], info['keypoints_visible'][0]
    assert kpts.shape == (17, 2) and vis.shape == (17, 2)
    np.testing.assert_array_equal(kpts[5], [406, 197])  # AIC left_shoulder (3) -> COCO 5
    np.testing.assert_array_equal(kpts[6], [313, 201])  # AIC right_shoulder (0) -> COCO 6
    np.testing.assert_array_equal(kpts[:5], 0)
    np.testing.assert_array_equal(vis[:, 0], [0] * 5 + [1] * 8 + [0] * 4)
    np.testing.assert_array_equal(vis[:, 1], [0] * 5 + [1] * 12)
    assert info['flip_indices'] == comb.metainfo['flip_indices'] and info['dataset_name'] == 'aic'


@needs_data
def test_stage2_switch_changes_pipeline():
    marker = []

    def stage1(results):
        marker.append(1)
        return results

    def stage2(results):
        marker.append(2)
        return results

    comb = build_dataset({**combined_cfg(), 'pipeline': [stage1], 'pipeline_stage2': [stage2]})
    comb[0]
    comb[1]
    assert comb.switch_to_stage2() and comb.in_stage2
    comb[2]
    assert not comb.switch_to_stage2()  # already switched
    assert marker == [1, 1, 2]


def test_training_skips_unlabelled_and_crowd_instances(tmp_path):
    ann = write_tiny_coco(tmp_path, n_people=4)
    data = json.loads(ann.read_text())
    data['annotations'][1]['num_keypoints'] = 0
    data['annotations'][2]['iscrowd'] = 1
    del data['annotations'][3]['keypoints']  # not a keypoint instance at all
    ann.write_text(json.dumps(data))
    ds = build_dataset(dict(type='CocoDataset', ann_file=str(ann), data_prefix=dict(img=str(tmp_path))))
    assert len(ds) == 1 and ds.get_data_info(0)['id'] == 1


@needs_coco
def test_compact_storage():
    ds = build_dataset(coco_cfg())
    assert all(isinstance(v, np.ndarray) for v in ds._inst.values())
    assert ds._inst['keypoints'].dtype == np.float32 and ds._img_names.dtype.kind == 'U'


def test_missing_annotation_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.json'):
        build_dataset(dict(type='CocoDataset', ann_file=str(tmp_path / 'missing.json')))


@pytest.mark.parametrize('edit, field', [
    (lambda d: d.pop('images'), '"images"'),
    (lambda d: d['annotations'][0].update(keypoints=[1, 2, 3]), '"keypoints"'),
    (lambda d: d['annotations'][0].update(bbox='oops'), '"bbox"'),
    (lambda d: d['annotations'][0].update(image_id=99), '"image_id"'),
    (lambda d: d['images'][0].pop('file_name'), '"file_name"'),
])
def test_malformed_annotation_names_file_and_field(tmp_path, edit, field):
    ann = write_tiny_coco(tmp_path)
    data = json.loads(ann.read_text())
    edit(data)
    ann.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=field) as err:
        build_dataset(dict(type='CocoDataset', ann_file=str(ann), data_prefix=dict(img=str(tmp_path))))
    assert 'ann.json' in str(err.value)


def test_invalid_json_names_file(tmp_path):
    ann = tmp_path / 'broken.json'
    ann.write_text('{"images": [')
    with pytest.raises(ValueError, match='broken.json'):
        build_dataset(dict(type='CocoDataset', ann_file=str(ann)))
