"""RTMDet: architecture sizes, MMDetection checkpoint layout, and detections equal to MMDetection 3.3.0.

Reference values were produced by MMDetection 3.3.0 (``inference_detector`` on RTMDet-tiny built from
its own config) with the same seeded weights as ``tests.conftest.seeded_state_dict``.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from apis.detector import inference_detector, init_detector
from models.checkpoints import CheckpointError
from models.detection.det_transforms import DetTestTransform, rescale_size
from models.detection.point_generator import MlvlPointGenerator, distance2bbox
from tests.conftest import COCO, REPO, RTMDET_TINY, needs_coco
from utils.config import Config
from utils.registry import MODELS

DET_CONFIGS = REPO / 'configs' / 'detection'

# (parameters, state-dict entries) of MMDetection 3.3.0's models built from its configs
SIZES = {'tiny': (4_896_168, 476), 's': (8_886_924, 512), 'm': (24_709_188, 692)}

# MMDetection 3.3.0 on the seeded RTMDet-tiny: detections count, top-3 boxes / scores / labels, score sum
REFERENCE = {
    '000000000785.jpg': dict(
        n=300, bboxes=[[591.11, 1.972, 640.0, 64.519], [543.178, 593.69, 606.716, 640.0],
                       [31.182, 593.689, 94.713, 640.0]],
        scores=[0.316575, 0.315876, 0.315836], labels=[0, 0, 0], sum_scores=92.8664),
    '000000040083.jpg': dict(
        n=300, bboxes=[[461.805, 1.541, 500.0, 50.433], [424.358, 464.081, 473.997, 500.282],
                       [24.361, 464.081, 73.994, 500.282]],
        scores=[0.316574, 0.315876, 0.315836], labels=[0, 0, 0], sum_scores=92.8661),
}


@pytest.mark.parametrize('size', sorted(SIZES))
def test_sizes_match_mmdetection(size):
    model = MODELS.build(Config.fromfile(DET_CONFIGS / f'rtmdet_{size}_8xb32-300e_coco.py').model)
    params = sum(p.numel() for p in model.parameters())
    assert (params, len(model.state_dict())) == SIZES[size]


def test_head_shares_convs_but_not_norms():
    head = MODELS.build(Config.fromfile(RTMDET_TINY).model).bbox_head
    assert head.cls_convs[2][1].conv.weight is head.cls_convs[0][1].conv.weight
    assert head.reg_convs[1][0].conv.weight is head.reg_convs[0][0].conv.weight
    assert head.cls_convs[1][0].bn.weight is not head.cls_convs[0][0].bn.weight


def test_point_priors_and_distance_decoding():
    gen = MlvlPointGenerator([8, 16], offset=0)
    p0, p1 = gen.grid_priors([(2, 3), (1, 2)])
    assert p0.tolist() == [[0, 0], [8, 0], [16, 0], [0, 8], [8, 8], [16, 8]]
    assert p1.tolist() == [[0, 0], [16, 0]]
    boxes = distance2bbox(torch.tensor([[10.0, 20.0]]), torch.tensor([[15.0, 5.0, 3.0, 100.0]]), (50, 40))
    assert boxes.tolist() == [[0.0, 15.0, 13.0, 50.0]]


def test_resize_and_pad_like_mmdetection():
    assert rescale_size(640, 425, (640, 640)) == (640, 425)
    assert rescale_size(500, 375, (640, 640)) == (640, 480)
    assert rescale_size(300, 1000, (640, 640)) == (192, 640)
    img = np.full((375, 500, 3), 7, np.uint8)
    out, meta = DetTestTransform()(img)
    assert out.shape == (640, 640, 3) and meta['img_shape'] == (640, 640)
    assert meta['scale_factor'] == (640 / 500, 480 / 375) and meta['ori_shape'] == (375, 500)
    assert (out[480:] == 114).all() and (out[:480] == 7).all()


def test_test_pipeline_is_read_from_mmdetection_style_config():
    cfg = Config.fromfile(RTMDET_TINY)
    tf = DetTestTransform.from_pipeline(cfg.test_dataloader.dataset.pipeline)
    assert (tf.scale, tf.keep_ratio, tf.pad_size, tf.pad_val) == ((640, 640), True, (640, 640), 114)
    with pytest.raises(ValueError, match='RandomFlip'):
        DetTestTransform.from_pipeline([dict(type='RandomFlip')])


@needs_coco
def test_detections_equal_mmdetection(seeded_rtmdet_tiny):
    model = init_detector(RTMDET_TINY, seeded_rtmdet_tiny)
    for name, ref in REFERENCE.items():  # one image given as a path, the other as a BGR array
        img = str(COCO / name) if name.startswith('000000000785') else cv2.imread(str(COCO / name))
        result = inference_detector(model, img)
        assert len(result['scores']) == ref['n']
        np.testing.assert_allclose(result['bboxes'][:3], ref['bboxes'], atol=2e-3)
        np.testing.assert_allclose(result['scores'][:3], ref['scores'], atol=2e-6)
        assert result['labels'][:3].tolist() == ref['labels']
        # The seeded weights give a tail of boxes whose scores tie to 1e-7, so which of them fill the 300
        # slots depends on the CPU's float rounding: the scores' sum is tie-invariant, the boxes' sum is not.
        assert float(result['scores'].astype(np.float64).sum()) == pytest.approx(ref['sum_scores'], rel=1e-6)


def test_checkpoint_of_another_model_names_keys(tmp_path, seeded_rtmdet_tiny):
    with pytest.raises(CheckpointError, match='shapes differ'):
        init_detector(DET_CONFIGS / 'rtmdet_s_8xb32-300e_coco.py', seeded_rtmdet_tiny)
    sd = torch.load(seeded_rtmdet_tiny, weights_only=True)['state_dict']
    del sd['bbox_head.rtm_cls.2.bias']
    torch.save({'state_dict': sd}, tmp_path / 'partial.pth')
    with pytest.raises(CheckpointError, match=r'bbox_head\.rtm_cls\.2\.bias'):
        init_detector(RTMDET_TINY, tmp_path / 'partial.pth')


def test_mmdetection_config_with_training_keys_builds():
    """A flat config dumped by MMDetection carries training-only entries; they are accepted and ignored."""
    cfg = Config.fromfile(RTMDET_TINY).model.to_dict()
    cfg['backbone']['init_cfg'] = dict(type='Pretrained', prefix='backbone.', checkpoint='cspnext-tiny.pth')
    cfg['bbox_head'].update(bbox_coder=dict(type='DistancePointBBoxCoder'),
                            loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0),
                            loss_bbox=dict(type='GIoULoss', loss_weight=2.0))
    cfg['train_cfg'] = dict(assigner=dict(type='DynamicSoftLabelAssigner', topk=13), allowed_border=-1)
    cfg['data_preprocessor']['batch_augments'] = None
    model = MODELS.build(cfg)
    assert sum(p.numel() for p in model.parameters()) == SIZES['tiny'][0]
