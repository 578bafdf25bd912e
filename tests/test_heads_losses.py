"""Heads, losses, flip helpers and training accuracy against MMPose 1.3.2 reference numbers.

The reference values were computed once with MMPose 1.3.2 (``/work/mmref``) on the deterministic inputs
built by ``det`` below (same formula there); the flow / layer weights are set by ``set_params``.
"""
import numpy as np
import pytest
import torch

from codec import build_codec
from models.heads.heatmap_head import HeatmapHead
from models.heads.regression_head import RegressionHead
from models.heads.rle_head import RLEHead
from models.heads.simcc_head import SimCCHead
from models.losses.accuracy import keypoint_pck_accuracy
from models.losses.classification_loss import KLDiscretLoss
from models.losses.heatmap_loss import KeypointMSELoss
from models.losses.regression_loss import L1Loss, RLELoss, SmoothL1Loss
from structures.flip import flip_coordinates, flip_heatmaps, flip_vectors

B, K = 3, 5
FLIP = [0, 2, 1]


def det(shape, seed, scale=1.0):
    """Deterministic float32 tensor: scale * sin(0.731 i + seed), i = 0..numel-1 (float64, then cast)."""
    n = int(np.prod(shape))
    return (torch.sin(torch.arange(n, dtype=torch.float64) * 0.731 + seed) * scale).reshape(shape).float()


def set_params(module, first_seed=20, scale=0.5, skip='loss_module'):
    """Fill parameters in sorted-name order with ``det`` (seeds count every parameter, skipped or not)."""
    for i, (name, p) in enumerate(sorted(module.named_parameters())):
        if skip not in name:
            with torch.no_grad():
                p.copy_(det(p.shape, first_seed + i, scale))


@pytest.fixture
def reg_inputs():
    pred = det((B, K, 2), 1, 0.5) + 0.5
    sigma = det((B, K, 2), 2, 2.0)
    target = det((B, K, 2), 3, 0.5) + 0.5
    weight = (det((B, K), 4) > -0.3).float()
    return pred, sigma, target, weight


@pytest.mark.parametrize('kwargs, expected', [
    (dict(use_target_weight=True), 42.535125732421875),
    (dict(use_target_weight=True, q_distribution='gaussian'), 43.658592224121094),
    (dict(use_target_weight=False, residual=False), 79.84278869628906),
    (dict(use_target_weight=True, size_average=False), 127.60538482666016),
])
def test_rle_loss_matches_mmpose(reg_inputs, kwargs, expected):
    pred, sigma, target, weight = reg_inputs
    loss = RLELoss(**kwargs)
    assert sum(p.numel() for p in loss.parameters()) == 53784
    for i, (_, p) in enumerate(sorted(loss.flow_model.named_parameters())):
        with torch.no_grad():
            p.copy_(det(p.shape, i, 0.1))
    value = loss(pred, sigma, target, weight.unsqueeze(-1))
    assert value.item() == pytest.approx(expected, rel=1e-5)
    # (B, K) weights broadcast like (B, K, 1)
    assert loss(pred, sigma, target, weight).item() == pytest.approx(value.item(), rel=1e-6)


@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_rle_loss_lets_non_finite_predictions_through(reg_inputs, bad):
    """No torch.distributions argument check: a NaN/inf prediction gives a non-finite loss (which the
    training loop reports, naming the iteration) instead of a ValueError."""
    pred, sigma, target, weight = reg_inputs
    pred = pred.clone()
    pred[1, 3, 0] = bad
    assert not torch.isfinite(RLELoss(use_target_weight=True)(pred, sigma, target, weight))


def test_rle_loss_rejects_bad_distribution():
    with pytest.raises(ValueError, match='q_distribution'):
        RLELoss(q_distribution='cauchy')


@pytest.mark.parametrize('kwargs, expected', [
    (dict(), 7.8475141525268555),
    (dict(beta=10.0, label_softmax=True), 6.583281517028809),
    (dict(use_target_weight=False), 14.846670150756836),
    (dict(mask=[1, 3], mask_weight=2.5), 12.222379684448242),
])
def test_kl_discret_loss_matches_mmpose(reg_inputs, kwargs, expected):
    weight = reg_inputs[3]
    px, py = det((B, K, 12), 5, 3.0), det((B, K, 16), 6, 3.0)
    gx, gy = det((B, K, 12), 7).abs(), det((B, K, 16), 8).abs()
    assert KLDiscretLoss(**kwargs)((px, py), (gx, gy), weight).item() == pytest.approx(expected, rel=1e-5)


def test_keypoint_mse_loss_matches_mmpose(reg_inputs):
    weight = reg_inputs[3]
    out = det((B, K, 4, 6), 9)
    tgt = det((B, K, 4, 6), 10).clamp(min=0)
    tgt[0, 1] = 0
    mask = (det((B, 1, 4, 6), 11) > 0).float()
    assert KeypointMSELoss()(out, tgt).item() == pytest.approx(0.48156166076660156, rel=1e-5)
    assert KeypointMSELoss(use_target_weight=True)(out, tgt, weight).item() == pytest.approx(
        0.2544052302837372, rel=1e-5)
    loss = KeypointMSELoss(use_target_weight=True, skip_empty_channel=True, loss_weight=2.0)
    assert loss(out, tgt, weight, mask).item() == pytest.approx(0.26108816266059875, rel=1e-5)
    with pytest.raises(ValueError, match='target_weights shape'):
        loss(out, tgt, weight[:, :2])


def test_l1_losses_match_mmpose(reg_inputs):
    pred, _, target, weight = reg_inputs
    assert SmoothL1Loss(use_target_weight=True)(pred * 3, target * 3, weight.unsqueeze(-1)).item() == \
        pytest.approx(0.6345158219337463, rel=1e-5)
    assert SmoothL1Loss(loss_weight=0.5)(pred * 3, target * 3).item() == pytest.approx(
        0.5767879486083984, rel=1e-5)
    assert L1Loss(reduction='sum', use_target_weight=True)(pred, target, weight).item() == pytest.approx(
        8.748980522155762, rel=1e-5)
    assert L1Loss()(pred, target).item() == pytest.approx(0.5370578765869141, rel=1e-5)


def test_pck_accuracy_matches_mmpose(reg_inputs):
    pred, _, _, weight = reg_inputs
    gt = pred + det((B, K, 2), 12, 0.05)
    acc = keypoint_pck_accuracy(pred, gt, weight > 0, 0.05, torch.ones(B, 2))
    assert acc.item() == pytest.approx(0.3)
    assert keypoint_pck_accuracy(pred, gt, torch.zeros(B, K, dtype=torch.bool), 0.05, torch.ones(B, 2)) == 0


def test_heads_acc_pose_matches_mmpose(reg_inputs):
    weight = reg_inputs[3]
    px, py = det((B, K, 12), 5, 3.0), det((B, K, 16), 6, 3.0)
    simcc = SimCCHead(4, K, input_size=(6, 8), in_featuremap_size=(1, 1), deconv_out_channels=None)
    targets = dict(keypoint_x_labels=px + det((B, K, 12), 13, 0.8),
                   keypoint_y_labels=py + det((B, K, 16), 14, 0.8), keypoint_weights=weight)
    assert simcc.loss((px, py), targets)['acc_pose'].item() == pytest.approx(0.4)
    out = det((B, K, 4, 6), 9)
    heatmap = HeatmapHead(4, K, deconv_out_channels=None)
    targets = dict(heatmaps=out + det((B, K, 4, 6), 15, 0.6), keypoint_weights=weight)
    losses = heatmap.loss(out, targets)
    assert losses['acc_pose'].item() == pytest.approx(0.6)
    assert 'acc_pose' not in heatmap.loss(out, targets, dict(compute_acc=False))


def test_loss_runs_in_fp32_for_bf16_outputs():
    head = RLEHead(8, 3)
    outputs = det((2, 3, 4), 1).to(torch.bfloat16).requires_grad_()
    targets = dict(keypoint_labels=det((2, 3, 2), 2, 0.4) + 0.5, keypoint_weights=torch.ones(2, 3))
    losses = head.loss(outputs, targets)
    assert losses['loss_kpt'].dtype == torch.float32 and losses['acc_pose'].dtype == torch.float32
    assert not losses['acc_pose'].requires_grad
    losses['loss_kpt'].backward()
    assert outputs.grad is not None and torch.isfinite(outputs.grad.float()).all()


# MMPose 1.3.2 head.predict(..., flip_test=True) on feats det((2, 8), 1) / flipped det((2, 8), 2) etc.
RLE_KPTS = [[[-1.3250699043273926, 68.06278228759766], [46.427913665771484, -5.402305603027344],
             [3.714730739593506, -43.002010345458984]],
            [[-7.244095087051392, 59.74036407470703], [50.46687698364258, -2.314626693725586],
             [0.9198253154754639, -22.15668296813965]]]
RLE_SCORES = [[0.17674341797828674, 0.57136070728302, 0.8527840375900269],
              [0.13672012090682983, 0.5649728775024414, 0.8162925243377686]]
REG_KPTS = [[[-1.3250699043273926, 68.06278228759766], [43.10833168029785, 11.703542709350586],
             [8.362908124923706, 22.158424377441406]],
            [[-7.244095087051392, 59.74036407470703], [27.941402435302734, 25.363296508789062],
             [6.393260478973389, 43.93252944946289]]]
SIMCC_KPTS = [[[4.0, 1.5], [0.0, 2.0], [4.5, 6.5]], [[3.0, 1.5], [0.0, 1.5], [4.5, 10.0]]]
SIMCC_SCORES = [[0.7588844895362854, 0.6047029495239258, 0.6626560091972351],
                [0.5072342157363892, 0.6672571301460266, 1.071619987487793]]
HEATMAP_KPTS = [[[15.0, 28.0], [4.0, 4.0], [7.0, 25.0]], [[15.0, 19.0], [4.0, 9.0], [7.0, 15.0]]]
HEATMAP_SCORES = [[0.7250256538391113, 0.6102831363677979, 0.6177953481674194],
                  [0.7025079131126404, 0.5910577178001404, 0.6168684363365173]]


def _flip_predict(head, feats, feats_flip, test_cfg):
    head.eval()
    with torch.no_grad():
        merged = head.flip_merge(head(feats), head(feats_flip), FLIP, test_cfg)
        return head.decode(merged)


def test_rle_head_flip_predict_matches_mmpose():
    head = RLEHead(8, 3, decoder=dict(type='RegressionLabel', input_size=(24, 32)))
    # MMPose's single fc (rows x, y, sigma_x, sigma_y per joint) goes through the load hook
    mmpose_fc = {'fc.bias': det((12,), 20, 0.5), 'fc.weight': det((12, 8), 21, 0.5)}
    result = head.load_state_dict(mmpose_fc, strict=False)
    assert not result.unexpected_keys and all(k.startswith('loss_module.') for k in result.missing_keys)
    kpts, scores = _flip_predict(head, (det((2, 8), 1),), (det((2, 8), 2),), dict(shift_coords=True))
    np.testing.assert_allclose(kpts.numpy(), RLE_KPTS, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(scores.numpy(), RLE_SCORES, rtol=1e-5, atol=1e-6)


def test_regression_head_flip_predict_matches_mmpose():
    head = RegressionHead(8, 3, decoder=dict(type='RegressionLabel', input_size=(24, 32)))
    set_params(head)
    kpts, scores = _flip_predict(head, (det((2, 8), 1),), (det((2, 8), 2),), dict(shift_coords=True))
    np.testing.assert_allclose(kpts.numpy(), REG_KPTS, rtol=1e-5, atol=1e-4)
    assert (scores == 1).all()


def test_simcc_head_flip_predict_matches_mmpose():
    head = SimCCHead(4, 3, input_size=(8, 12), in_featuremap_size=(2, 3), deconv_out_channels=None,
                     decoder=dict(type='SimCCLabel', input_size=(8, 12), sigma=2.0, simcc_split_ratio=2.0))
    set_params(head)
    kpts, scores = _flip_predict(head, (det((2, 4, 3, 2), 3),), (det((2, 4, 3, 2), 4),), {})
    np.testing.assert_allclose(kpts.numpy(), SIMCC_KPTS)
    np.testing.assert_allclose(scores.numpy(), SIMCC_SCORES, rtol=1e-5)


def test_heatmap_head_flip_predict_matches_mmpose():
    head = HeatmapHead(4, 3, deconv_out_channels=None,
                       decoder=dict(type='MSRAHeatmap', input_size=(24, 32), heatmap_size=(6, 8), sigma=2))
    set_params(head)
    kpts, scores = _flip_predict(head, (det((2, 4, 8, 6), 5),), (det((2, 4, 8, 6), 6),),
                                 dict(shift_heatmap=True))
    np.testing.assert_allclose(kpts.numpy(), HEATMAP_KPTS)
    np.testing.assert_allclose(scores.numpy(), HEATMAP_SCORES, rtol=1e-5)


def test_flip_helpers():
    coords = det((2, 3, 4), 1)
    flipped = flip_coordinates(coords, FLIP, shift_coords=True, input_size=(10, 20))
    np.testing.assert_allclose(flipped[:, :, 0].numpy(), (1 - coords[:, FLIP, 0] - 0.1).numpy(), rtol=1e-6)
    assert torch.equal(flipped[:, :, 1:], coords[:, FLIP, 1:])
    assert torch.equal(coords, det((2, 3, 4), 1))  # input untouched
    x, y = flip_vectors(det((2, 3, 5), 2), det((2, 3, 6), 3), FLIP)
    assert torch.equal(x, det((2, 3, 5), 2)[:, FLIP].flip(-1)) and torch.equal(y, det((2, 3, 6), 3)[:, FLIP])
    maps = det((1, 3, 2, 4), 4)
    shifted = flip_heatmaps(maps, FLIP, shift_heatmap=True)
    plain = maps[:, FLIP].flip(-1)
    assert torch.equal(shifted[..., 1:], plain[..., :-1]) and torch.equal(shifted[..., 0], plain[..., 0])
    udp = flip_heatmaps(det((1, 6, 2, 4), 7), [0, 1], 'udp_combined', True)
    np.testing.assert_allclose(udp.flatten()[:16].numpy(), [
        0.22970829904079437, 0.22970829904079437, 0.8207816481590271, 0.9924472570419312,
        -0.43439871072769165, -0.43439871072769165, -0.924747109413147, -0.942562997341156,
        -0.6186028718948364, -0.6186028718948364, -0.9851015210151672, -0.8482273817062378,
        0.7736336588859558, 0.7736336588859558, 0.9989984631538391, 0.7138893008232117], rtol=1e-6)
    offset = flip_heatmaps(det((1, 4, 2, 3), 8), [1, 0], 'offset', False)
    np.testing.assert_allclose(offset.flatten()[:8].numpy(), [
        0.577412486076355, 0.9749633073806763, 0.8743218183517456, -0.9999778866767883, -0.7489287853240967,
        -0.11518782377243042, -0.5882163047790527, 0.10197102278470993], rtol=1e-6)
    with pytest.raises(ValueError, match='flip_indices'):
        flip_coordinates(coords, [0, 1], True, (10, 20))


def test_batched_decode_equals_codec_decode():
    codec_cfg = dict(type='RegressionLabel', input_size=(192, 256))
    head = RLEHead(8, 17, decoder=codec_cfg)
    raw = det((4, 17, 4), 1, 3.0)
    kpts, scores = head.decode(raw)
    activated = torch.cat([raw[..., :2], raw[..., 2:].sigmoid()], -1).numpy()
    ref_k, ref_s = build_codec(codec_cfg).decode(activated)
    np.testing.assert_allclose(kpts.numpy(), ref_k, rtol=1e-6)
    np.testing.assert_allclose(scores.numpy(), ref_s, rtol=1e-6, atol=1e-7)

    codec_cfg = dict(type='SimCCLabel', input_size=(192, 256), sigma=6.0, simcc_split_ratio=2.0)
    head = SimCCHead(8, 17, input_size=(192, 256), in_featuremap_size=(6, 8), deconv_out_channels=None,
                     decoder=codec_cfg)
    sx, sy = det((4, 17, 384), 2), det((4, 17, 512), 3) - 0.8  # some rows <= 0 -> location -1
    kpts, scores = head.decode((sx, sy))
    ref_k, ref_s = build_codec(codec_cfg).decode(sx.numpy(), sy.numpy())
    np.testing.assert_array_equal(kpts.numpy(), ref_k)
    np.testing.assert_array_equal(scores.numpy(), ref_s)

    for codec_cfg in (dict(type='MSRAHeatmap', input_size=(192, 256), heatmap_size=(48, 64), sigma=2),
                      dict(type='MSRAHeatmap', input_size=(48, 64), heatmap_size=(12, 16), sigma=2,
                           unbiased=True),
                      dict(type='UDPHeatmap', input_size=(48, 64), heatmap_size=(12, 16), sigma=2)):
        h, w = codec_cfg['heatmap_size'][::-1]
        head = HeatmapHead(8, 17, decoder=codec_cfg)
        maps = det((3, 17, h, w), 4) * det((3, 17, 1, 1), 5) + 0.01 * det((3, 17, h, w), 6)
        kpts, scores = head.decode(maps)
        codec = build_codec(codec_cfg)
        for i in range(3):
            ref_k, ref_s = codec.decode(maps[i].numpy())
            np.testing.assert_allclose(kpts[i:i + 1].numpy(), ref_k, rtol=1e-6, atol=1e-5)
            np.testing.assert_allclose(scores[i:i + 1].numpy(), ref_s, rtol=1e-6)


def test_head_param_counts_match_mmpose():
    # MMPose 1.3.2: HeatmapHead(1280, 17) 7,345,937; SimCCHead(1280, 17, (192, 256), (6, 8)) with deconvs
    # 10,099,345; RLEHead(1280, 17) without the flow 87,108.
    assert sum(p.numel() for p in HeatmapHead(1280, 17).parameters()) == 7345937
    assert sum(p.numel() for p in SimCCHead(1280, 17, (192, 256), (6, 8)).parameters()) == 10099345
    rle = RLEHead(1280, 17)
    assert sum(p.numel() for n, p in rle.named_parameters() if not n.startswith('loss_module.')) == 87108


def test_init_weights_follow_mmpose_defaults():
    head = RLEHead(1280, 17)
    head.init_weights()
    flow_linear = head.loss_module.flow_model.s[0][0]
    assert (flow_linear.bias == 0).all() and (head.fc_coord.bias == 0).all()
    assert 0.008 < head.fc_coord.weight.std().item() < 0.012
    heatmap = HeatmapHead(64, 17, deconv_out_channels=(32,), deconv_kernel_sizes=(4,))
    heatmap.init_weights()
    assert heatmap.deconv_layers[0].weight.std().item() < 0.002
    assert (heatmap.deconv_layers[1].weight == 1).all() and (heatmap.final_layer.bias == 0).all()


def test_bad_head_arguments_are_reported():
    with pytest.raises(ValueError, match='deconv_kernel_sizes'):
        HeatmapHead(8, 17, deconv_out_channels=(8,), deconv_kernel_sizes=(5,))
    with pytest.raises(ValueError, match='same'):
        HeatmapHead(8, 17, deconv_out_channels=(8, 8), deconv_kernel_sizes=(4,))
    with pytest.raises(ValueError, match='deconv_type'):
        SimCCHead(8, 17, (192, 256), (6, 8), deconv_type='vipnas')
    with pytest.raises(RuntimeError, match='decoder'):
        RLEHead(8, 17).decode(torch.zeros(1, 17, 4))
