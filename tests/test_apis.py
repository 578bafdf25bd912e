"""apis.init_model / inference_topdown: same keypoints as the validation path (dataset pipeline +
pose_collate + model.predict, what val.py runs), on the real RLE-0.5x weights and COCO images."""
from __future__ import annotations

from collections import defaultdict

import cv2
import numpy as np
import pytest

from apis import inference_topdown, init_model
from apis.inputs import ImageReadError
from datasets import build_dataloader
from models.checkpoints import CheckpointError
from tests.conftest import COCO, DATA, REPO, RLE_WEIGHTS, needs_data, needs_weights
from utils.config import Config

POSE_CFG = REPO / 'configs' / 'rle' / 'rle_mbv2-0.5x_aic-coco-192x192.py'

pytestmark = [needs_data, needs_weights]


@pytest.fixture(scope='module')
def model():
    return init_model(POSE_CFG, RLE_WEIGHTS)


def _val_path_predictions(model) -> dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Per image path: (bbox, keypoints, scores) of every GT instance through the validation loader."""
    cfg = Config.fromfile(POSE_CFG)
    loader_cfg = dict(cfg.val_dataloader, num_workers=0, persistent_workers=False, batch_size=8)
    loader_cfg['dataset'] = dict(loader_cfg['dataset'], data_root=str(DATA), bbox_file=None,
                                 ann_file='coco/test_coco.json', data_prefix=dict(img='coco/'))
    out = defaultdict(list)
    for batch in build_dataloader(loader_cfg, seed=0, cfg_dir=POSE_CFG.parent):
        pred = model.predict(batch['inputs'], batch['meta'])
        for i, path in enumerate(batch['meta']['img_path']):
            out[path].append((batch['meta']['bbox'][i].numpy(), pred['keypoints'][i],
                              pred['keypoint_scores'][i]))
    return out


def test_same_keypoints_as_validation_path(model):
    reference = _val_path_predictions(model)
    assert len(reference) == 4 and sum(len(v) for v in reference.values()) >= 4
    for path, instances in reference.items():
        boxes = np.stack([b for b, _, _ in instances])
        results = inference_topdown(model, path, boxes)
        assert len(results) == len(instances)
        for res, (box, kpts, scores) in zip(results, instances):
            np.testing.assert_array_equal(res['bbox'], box)
            # other batch sizes change float32 summation order only: agree to 1e-3 px
            np.testing.assert_allclose(res['keypoints'], kpts, rtol=0, atol=1e-3)
            np.testing.assert_allclose(res['keypoint_scores'], scores, rtol=0, atol=1e-5)
            assert res['keypoints'].dtype == np.float32 and res['keypoints'].shape == (17, 2)
            assert res['bbox_score'] == 1.0


def test_array_input_xywh_boxes_and_whole_image(model):
    path = COCO / '000000196141.jpg'
    img = cv2.imread(str(path))
    box_xyxy = np.array([[50.0, 60.0, 250.0, 400.0]], np.float32)
    from_path = inference_topdown(model, str(path), box_xyxy, bbox_scores=[0.7])
    from_array = inference_topdown(model, img, [[50, 60, 200, 340]], bbox_format='xywh')
    np.testing.assert_allclose(from_array[0]['keypoints'], from_path[0]['keypoints'], atol=0.5)
    assert from_path[0]['bbox_score'] == pytest.approx(0.7)
    whole = inference_topdown(model, img)
    assert len(whole) == 1
    np.testing.assert_array_equal(whole[0]['bbox'], [0, 0, img.shape[1], img.shape[0]])
    assert model.dataset_meta['num_keypoints'] == 17 and len(model.dataset_meta['skeleton_links']) == 19


def test_bad_inputs_are_named(model, tmp_path):
    with pytest.raises(ValueError, match="bbox_format must be 'xyxy' or 'xywh'"):
        inference_topdown(model, str(COCO / '000000196141.jpg'), [[0, 0, 10, 10]], bbox_format='cxcywh')
    with pytest.raises(ImageReadError, match='nope.jpg'):
        inference_topdown(model, str(tmp_path / 'nope.jpg'))
    with pytest.raises(FileNotFoundError, match='no_such_config.py'):
        init_model(tmp_path / 'no_such_config.py', RLE_WEIGHTS)


def test_checkpoint_not_matching_config_names_keys():
    other = REPO / 'configs' / 'rle' / 'rle_mbv2-0.75x_aic-coco-192x192.py'
    with pytest.raises(CheckpointError, match=r'backbone\.\S+'):
        init_model(other, RLE_WEIGHTS)
