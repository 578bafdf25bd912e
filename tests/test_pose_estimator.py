"""TopdownPoseEstimator: real RLE-0.5x weights (../shared/weights) against MMPose 1.3.2, predictions on the
COCO sample images, MMPose-layout checkpoints, training loss, tracing and ONNX export."""
import io
import re

import numpy as np
import pytest
import torch

from datasets import build_dataset, pose_collate
from models import build_pose_estimator
from models.checkpoints import load_checkpoint
from models.data_preprocessor import PoseDataPreprocessor
from models.pose_estimator import crop_to_image
from tests.conftest import DATA, RLE_WEIGHTS, SAMPLE_CONFIG, UDP_BACKBONE, needs_coco, needs_weights
from utils.config import Config
from utils.registry import RegistryError

RLE_CFG = 'configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py'
SIMCC_CFG = 'configs/simcc/simcc_mbv2-0.75x-wo-deconv_aic-coco-256x192.py'

# MMPose 1.3.2 TopdownPoseEstimator (MobileNetV2-0.5x + RLEHead) with the real weights (renamed to MMPose's
# layout), mode='tensor' on det((2, 3, 192, 192), 3): shape (2, 17, 4), first 3 joints of sample 0, sum.
MMPOSE_FIRST = [0.4152349829673767, 0.45034047961235046, 6.275588035583496, 11.776105880737305,
                0.4443792700767517, 0.437541127204895, 7.012729167938232, 11.33702564239502,
                0.38733404874801636, 0.43837931752204895, 6.7492475509643555, 11.209840774536133]
MMPOSE_SUM = 425.68052031099796


def det(shape, seed, scale=1.0):
    n = int(np.prod(shape))
    return (torch.sin(torch.arange(n, dtype=torch.float64) * 0.731 + seed) * scale).reshape(shape).float()


def build(cfg_path, **model_overrides):
    cfg = Config.fromfile(cfg_path)
    cfg.model.update(model_overrides)
    return build_pose_estimator(cfg.model), cfg


def to_mmpose_layout(state_dict):
    """Rename this project's keys the MMPose way (MobileNetV2 layer{b+1}.{i-1}.conv.{k}; one RLE head.fc)."""
    pattern = re.compile(r'backbone\.block_(\d+)\.(\d+)\.(dw_|pw_|)(conv|bn)\.(.+)')
    expanded = {m.group(1, 2) for k in state_dict if (m := pattern.match(k)) and m[3] == ''}
    out = {}
    for key, value in state_dict.items():
        if m := pattern.match(key):
            stages = ['', 'dw_', 'pw_'] if m.group(1, 2) in expanded else ['dw_', 'pw_']
            new = f'layer{int(m[1]) + 1}.{int(m[2]) - 1}.conv.{stages.index(m[3])}.{m[4]}.{m[5]}'
            out[f'backbone.{new}'] = value
        elif key.startswith('head.fc_coord.'):
            name = key.rsplit('.', 1)[1]
            coord = value.reshape(17, 2, *value.shape[1:])
            sigma = state_dict[f'head.fc_sigma.{name}'].reshape(17, 2, *value.shape[1:])
            out[f'head.fc.{name}'] = torch.cat([coord, sigma], 1).reshape(68, *value.shape[1:])
        elif not key.startswith('head.fc_sigma.'):
            out[key] = value
    return out


@pytest.fixture(scope='module')
def rle_model():
    """The RLE-0.5x estimator with the original project's weights (tests marked needs_weights)."""
    model, _ = build(RLE_CFG)
    report = load_checkpoint(model, RLE_WEIGHTS)
    assert report.missing == [] and report.unexpected == []
    return model.eval()


@needs_weights
def test_real_weights_load_strictly_and_match_mmpose(rle_model):
    state_dict = torch.load(RLE_WEIGHTS, map_location='cpu', weights_only=True)
    fresh, _ = build(RLE_CFG)
    result = fresh.load_state_dict(state_dict, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    with torch.no_grad():
        out = rle_model(det((2, 3, 192, 192), 3))
    assert out.shape == (2, 17, 4)
    np.testing.assert_allclose(out[0, :3].flatten().numpy(), MMPOSE_FIRST, rtol=1e-4, atol=1e-5)
    assert out.double().sum().item() == pytest.approx(MMPOSE_SUM, rel=1e-5)


@needs_weights
def test_mmpose_layout_checkpoint_gives_identical_outputs(rle_model, tmp_path):
    state_dict = torch.load(RLE_WEIGHTS, map_location='cpu', weights_only=True)
    mmpose_sd = to_mmpose_layout(state_dict)
    assert 'head.fc.weight' in mmpose_sd and 'backbone.layer2.0.conv.1.conv.weight' in mmpose_sd
    path = tmp_path / 'mmpose_rle.pth'
    torch.save({'state_dict': mmpose_sd, 'meta': {}}, path)
    model, _ = build(RLE_CFG)
    report = load_checkpoint(model, path)
    assert report.naming == 'mmpose' and not report.missing and not report.unexpected
    x = det((2, 3, 192, 192), 5)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), rle_model(x))


def _sample_batch():
    """The COCO sample's validation batch (tests marked needs_coco)."""
    cfg = Config.fromfile(SAMPLE_CONFIG)
    cfg.val_dataloader.dataset.data_root = str(DATA) + '/'
    dataset = build_dataset(cfg.val_dataloader.dataset)
    return pose_collate([dataset[i] for i in range(len(dataset))])


@needs_coco
@needs_weights
@pytest.mark.parametrize('flip_test', [True, False])
def test_predict_on_coco_sample_is_plausible(rle_model, flip_test):
    batch = _sample_batch()
    rle_model.test_cfg['flip_test'] = flip_test
    try:
        preds = rle_model.predict(batch['inputs'], batch['meta'])
    finally:
        rle_model.test_cfg['flip_test'] = True
    kpts, scores = preds['keypoints'], preds['keypoint_scores']
    n = batch['inputs'].shape[0]
    assert kpts.shape == (n, 17, 2) and kpts.dtype == np.float32 and scores.shape == (n, 17)
    assert np.isfinite(kpts).all() and ((scores > 0) & (scores < 1)).all()
    box = batch['meta']['bbox'].numpy()
    visible = batch['meta']['keypoints_visible'].numpy() > 0
    inside = ((kpts[..., 0] >= box[:, None, 0]) & (kpts[..., 0] <= box[:, None, 2])
              & (kpts[..., 1] >= box[:, None, 1]) & (kpts[..., 1] <= box[:, None, 3]))
    assert inside[visible].mean() > 0.9
    gt = batch['meta']['keypoints'].numpy()
    diag = np.hypot(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])[:, None].repeat(17, 1)
    err = np.linalg.norm(kpts - gt, axis=-1)
    assert np.median(err[visible] / diag[visible]) < 0.05  # typical error well under 5% of the box diagonal


def test_predict_maps_crop_to_image_and_flip_merges():
    model, cfg = build(RLE_CFG, test_cfg=dict(flip_test=False))
    model.eval()
    inputs = (det((2, 3, 192, 192), 1, 127) + 128).to(torch.uint8)
    meta = dict(input_size=torch.tensor([[192, 192]] * 2),
                bbox_center=torch.tensor([[100., 50.], [20., 30.]]),
                bbox_scale=torch.tensor([[96., 96.], [192., 192.]]))
    preds = model.predict(inputs, meta)
    with torch.no_grad():
        raw = model(model.preprocess(inputs))
    crop = raw[..., :2].numpy() * 192
    expected = crop / 192 * meta['bbox_scale'].numpy()[:, None] + meta['bbox_center'].numpy()[:, None] \
        - 0.5 * meta['bbox_scale'].numpy()[:, None]
    np.testing.assert_allclose(preds['keypoints'], expected, rtol=1e-5, atol=1e-4)
    model.test_cfg['flip_test'] = True
    with pytest.raises(KeyError, match='flip_indices'):
        model.predict(inputs, meta)
    flip = list(range(17))
    preds_flip = model.predict(inputs, {**meta, 'flip_indices': torch.tensor([flip, flip])})
    with torch.no_grad():
        x = model.preprocess(inputs)
        merged = model.head.flip_merge(model(x), model(x.flip(-1)), flip, model.test_cfg)
        kpts, _ = model.head.decode(merged)
    expected = crop_to_image(kpts, meta['input_size'], meta['bbox_center'], meta['bbox_scale'])
    np.testing.assert_allclose(preds_flip['keypoints'], expected, rtol=1e-6, atol=1e-5)
    assert not np.allclose(preds_flip['keypoints'], preds['keypoints'])


def test_loss_backward_and_preprocessing():
    model, _ = build(RLE_CFG)
    inputs = (det((2, 3, 192, 192), 2, 127) + 128).to(torch.uint8)
    targets = dict(keypoint_labels=det((2, 17, 2), 3, 0.4) + 0.5, keypoint_weights=torch.ones(2, 17))
    losses = model.loss(inputs, targets)
    assert set(losses) == {'loss_kpt', 'acc_pose'} and torch.isfinite(losses['loss_kpt'])
    losses['loss_kpt'].backward()
    assert model.backbone.conv1.conv.weight.grad is not None
    assert model.head.fc_sigma.weight.grad is not None
    pre = model.data_preprocessor
    x = pre(inputs)
    expected = (inputs.flip(1).float() - 128) / 128  # BGR -> RGB, mean/std 128
    assert x.dtype == torch.float32 and torch.equal(x, expected)
    assert not any(k.startswith('data_preprocessor') for k in model.state_dict())
    with pytest.raises(ValueError, match='3 values'):
        PoseDataPreprocessor(mean=[1, 2], std=[1, 2])
    with pytest.raises(ValueError, match='expects images'):
        pre(inputs[0])


@needs_weights
def test_init_weights_loads_the_pretrained_backbone():
    cfg = Config.fromfile(SAMPLE_CONFIG)
    cfg.model.backbone.init_cfg.checkpoint = str(UDP_BACKBONE)
    model = build_pose_estimator(cfg.model)
    model.init_weights()
    saved = torch.load(UDP_BACKBONE, map_location='cpu', weights_only=True)
    saved = saved.get('state_dict', saved)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, saved['backbone.' + key]), key
    assert (model.head.fc_coord.bias == 0).all()


@pytest.mark.filterwarnings('ignore::DeprecationWarning')
@pytest.mark.parametrize('cfg_path', [RLE_CFG, SIMCC_CFG])
def test_forward_traces_and_exports(cfg_path):
    model, cfg = build(cfg_path)
    model.eval()
    w, h = cfg.codec['input_size']
    x = det((2, 3, h, w), 4)
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        out, out_traced = model(x), traced(x)
    outs = zip(out, out_traced) if isinstance(out, tuple) else [(out, out_traced)]
    assert all(torch.equal(a, b) for a, b in outs)
    onnx = pytest.importorskip('onnx')
    buffer = io.BytesIO()
    torch.onnx.export(model, (x,), buffer, dynamo=False, input_names=['input'])
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    assert len(proto.graph.output) == (2 if isinstance(out, tuple) else 1)


def test_bad_model_config_names_the_path():
    cfg = Config.fromfile(RLE_CFG)
    cfg.model.head.loss.type = 'RLELos'
    with pytest.raises(RegistryError, match='RLELoss') as err:
        build_pose_estimator(cfg.model)
    assert 'model.head.loss' in str(err.value)
