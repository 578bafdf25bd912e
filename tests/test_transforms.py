"""Top-down transforms against MMPose 1.3.2 reference values (recorded from its run on ../shared/data)."""
from __future__ import annotations

import copy
import json
import logging

import cv2
import numpy as np
import pytest

from datasets import build_dataset
from datasets.transforms import (
    Albumentation,
    Compose,
    GenerateTarget,
    GetBBoxCenterScale,
    ImageLoadError,
    KeypointConverter,
    LoadImage,
    PackPoseInputs,
    PhotometricDistortion,
    RandomBBoxTransform,
    RandomFlip,
    RandomHalfBody,
    TopdownAffine,
    YOLOXHSVRandomAug,
)
from tests.conftest import coco_cfg, needs_coco, needs_weights, rle_pipelines, write_tiny_coco

# MMPose 1.3.2, CocoDataset sample 3 (ann 460541): GetBBoxCenterScale, optional RandomFlip(prob=1),
# bbox_rotation=30, TopdownAffine(input_size=(192, 256), use_udp): first 3 transformed keypoints and
# the crop's mean BGR value.
MMPOSE_AFFINE = {
    (False, False): ([[36.328857, 73.119545], [35.805970, 69.490280], [-176.593918, 108.778885]],
                     [83.464884, 113.957052, 115.555929]),
    (False, True): ([[78.307709, 48.883041], [215.651016, -117.683807], [75.426117, 46.615574]],
                    [78.849040, 110.072734, 109.584290]),
    (True, False): ([[113.100143, 48.692085], [115.966736, 46.433479], [-23.527805, -117.224129]],
                    [79.107259, 110.317607, 109.894999]),
    (True, True): ([[154.860367, 72.833923], [366.674133, 108.353973], [155.380539, 69.218826]],
                   [83.627279, 114.150574, 115.778402]),
}


def _coco_info(idx=3):
    return build_dataset(coco_cfg()).get_data_info(idx)


class _Rotate30:
    def __call__(self, results):
        results['bbox_rotation'] = np.array([30.0], np.float32)
        return results


@needs_coco
def test_center_scale_of_known_box():
    out = GetBBoxCenterScale()(_coco_info())
    np.testing.assert_allclose(out['bbox_center'], [[332.595, 224.62001]], rtol=1e-6)  # MMPose
    np.testing.assert_allclose(out['bbox_scale'], [[212.0875, 375.975]], rtol=1e-6)


@needs_coco
def test_flip_swaps_left_right_and_mirrors():
    info = LoadImage()(_coco_info())
    before = copy.deepcopy(info)
    out = RandomFlip(prob=1.0)(info)
    w = before['img_shape'][1]
    flip = before['flip_indices']
    np.testing.assert_allclose(out['keypoints'][0, :, 0], w - 1 - before['keypoints'][0, flip, 0])
    np.testing.assert_array_equal(out['keypoints_visible'][0], before['keypoints_visible'][0, flip])
    np.testing.assert_allclose(out['bbox'][0, [0, 2]], w - 1 - before['bbox'][0, [2, 0]])
    np.testing.assert_array_equal(out['img'], before['img'][:, ::-1])
    assert out['flip'] and out['flip_direction'] == 'horizontal'


@needs_coco
@pytest.mark.parametrize('udp, flip', list(MMPOSE_AFFINE))
def test_affine_maps_keypoints_and_pixels_like_mmpose(udp, flip):
    steps = [LoadImage(), GetBBoxCenterScale(), *([RandomFlip(prob=1.0)] if flip else []), _Rotate30(),
             TopdownAffine(input_size=(192, 256), use_udp=udp)]
    pipe = Compose(steps)
    out = pipe(_coco_info())
    kpts, mean = MMPOSE_AFFINE[(udp, flip)]
    np.testing.assert_allclose(out['transformed_keypoints'][0, :3], kpts, atol=2e-3)
    assert out['img'].shape == (256, 192, 3) and out['input_size'] == (192, 256)
    # Same crop up to JPEG-decoder rounding (OpenCV builds differ by a few levels on a few pixels).
    np.testing.assert_allclose(out['img'].reshape(-1, 3).mean(0), mean, atol=0.05)


@needs_coco
@needs_weights
def test_generate_target_regression_and_simcc():
    pipes = rle_pipelines()
    out = Compose(pipes['val_pipeline'][:-1])(_coco_info())
    enc = GenerateTarget(encoder=pipes['codec'])(copy.deepcopy(out))
    kpts = out['transformed_keypoints']
    inside = (kpts >= 0).all(-1) & (kpts < 192).all(-1) & (out['keypoints_visible'] > 0)
    np.testing.assert_allclose(enc['keypoint_labels'], kpts / 192.0, rtol=1e-6)
    np.testing.assert_array_equal(enc['keypoint_weights'], inside.astype(np.float32))
    simcc = GenerateTarget(encoder=dict(type='SimCCLabel', input_size=(192, 192), sigma=6.0,
                                        simcc_split_ratio=2.0))(copy.deepcopy(out))
    assert simcc['keypoint_x_labels'].shape == (1, 17, 384)
    assert simcc['keypoint_y_labels'].shape == (1, 17, 384)
    packed = PackPoseInputs()(enc)
    assert packed['inputs'].shape == (3, 192, 192) and str(packed['inputs'].dtype) == 'torch.uint8'
    assert packed['targets']['keypoint_labels'].shape == (17, 2)
    assert packed['targets']['keypoint_weights'].shape == (17,)
    assert packed['meta']['keypoints'].shape == (17, 2) and packed['meta']['bbox'].shape == (4,)


def test_generate_target_splits_converter_visibility():
    info = {'keypoints': np.full((1, 14, 2), 50, np.float32), 'keypoints_visible': np.ones((1, 14))}
    conv = KeypointConverter(17, [(0, 6), (3, 5)])(info)
    out = GenerateTarget(encoder=dict(type='RegressionLabel', input_size=(192, 192)))(conv)
    assert out['keypoints_visible'].shape == (1, 17) and out['keypoints_visible_weights'].shape == (1, 17)
    np.testing.assert_array_equal(np.flatnonzero(out['keypoint_weights'][0]), [5, 6])


def test_keypoint_converter_interpolation_remaps_flip_indices():
    info = {'keypoints': np.arange(8, dtype=np.float32).reshape(1, 4, 2),
            'keypoints_visible': np.ones((1, 4)),
            'flip_indices': [1, 0, 2, 3]}
    out = KeypointConverter(3, [(0, 0), (1, 1), ((2, 3), 2)])(info)
    np.testing.assert_allclose(out['keypoints'][0, 2], [5, 6])
    assert out['flip_indices'] == [1, 0, 2]


def _draws(transform, n, make):
    rng = np.random.default_rng(123)  # one stream for all the draws, as a dataset gives one sample
    return [transform({**make(), 'rng': rng}) for _ in range(n)]


def test_bbox_transform_distribution_matches_mmpose():
    # MMPose 1.3.2, RandomBBoxTransform(scale_factor=[0.6, 1.4], rotate_factor=80), 200k draws:
    # shift applied 29.96 %, std of applied shifts 0.0863; scale mean 1.0000, std 0.2156 in
    # [0.6, 1.4]; rotation applied 59.91 %, std of applied rotations 43.17 deg, |rot| <= 80.
    t = RandomBBoxTransform(scale_factor=[0.6, 1.4], rotate_factor=80)
    offset, scale, rot = t.get_params(100_000, np.random.default_rng(0))
    shifted = offset[:, 0] != 0
    assert shifted.mean() == pytest.approx(0.2996, abs=0.006)
    assert offset[shifted].std() == pytest.approx(0.0863, abs=0.002) and np.abs(offset).max() <= 0.16
    assert scale.mean() == pytest.approx(1.0, abs=0.003) and scale.std() == pytest.approx(0.2156, abs=0.003)
    assert 0.6 <= scale.min() and scale.max() <= 1.4
    assert (rot != 0).mean() == pytest.approx(0.599, abs=0.006)
    assert rot[rot != 0].std() == pytest.approx(43.17, abs=0.6) and np.abs(rot).max() <= 80
    out = t({'bbox_center': np.array([[100.0, 50.0]], np.float32),
             'bbox_scale': np.array([[40.0, 80.0]], np.float32)})
    assert out['bbox_rotation'].shape == (1,) and out['bbox_scale'].shape == (1, 2)


@needs_coco
@pytest.mark.slow
def test_flip_and_half_body_frequencies():
    info = _coco_info(0)  # 17 visible keypoints
    info['img'] = np.zeros((4, 4, 3), np.uint8)
    info['img_shape'] = (425, 640)
    info.update(GetBBoxCenterScale()(dict(bbox=info['bbox'])))
    flips = _draws(RandomFlip(prob=0.5), 4000, lambda: copy.deepcopy(info))
    assert np.mean([o['flip'] for o in flips]) == pytest.approx(0.5, abs=0.03)
    half = _draws(RandomHalfBody(), 4000, lambda: copy.deepcopy(info))
    changed = [not np.allclose(o['bbox_center'], info['bbox_center']) for o in half]
    assert np.mean(changed) == pytest.approx(0.3, abs=0.03)
    upper = [o['bbox_center'][0, 1] < info['bbox_center'][0, 1] for o, c in zip(half, changed) if c]
    assert np.mean(upper) == pytest.approx(0.7, abs=0.05)


@pytest.mark.parametrize('gains', [(4, -17, 25), (-5, 30, -30)])
def test_yolox_hsv_equals_mmpose_formula(monkeypatch, gains):
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    gains = np.array(gains, np.int16)
    t = YOLOXHSVRandomAug()
    monkeypatch.setattr(t, 'get_gains', lambda rng: gains)
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.int16)  # MMPose's arithmetic
    hsv[..., 0] = (hsv[..., 0] + gains[0]) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] + gains[1], 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] + gains[2], 0, 255)
    expected = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
    np.testing.assert_array_equal(t({'img': img.copy()})['img'], expected)
    rng = np.random.default_rng(1)
    g = np.array([t.get_gains(rng) for t in [YOLOXHSVRandomAug()] * 2000])
    assert np.abs(g).max(0).tolist() <= [5, 30, 30] and (g == 0).mean(0).min() > 0.45


def test_albumentation_blur_median_dropout():
    img = np.random.default_rng(0).integers(0, 256, (192, 192, 3), dtype=np.uint8)
    blur = Albumentation([dict(type='Blur', p=1.0)])
    out = blur({'img': img, 'rng': np.random.default_rng(5)})['img']
    assert any(np.array_equal(out, cv2.blur(img, (k, k))) for k in (3, 5, 7))
    median = Albumentation([dict(type='MedianBlur', p=1.0)])
    out = median({'img': img, 'rng': np.random.default_rng(5)})['img']
    assert any(np.array_equal(out, cv2.medianBlur(img, k)) for k in (3, 5, 7))
    drop = Albumentation([dict(type='CoarseDropout', max_holes=1, max_height=0.4, max_width=0.4, min_holes=1,
                               min_height=0.2, min_width=0.2, p=1.0)])
    rng = np.random.default_rng(7)
    for _ in range(50):
        out = drop({'img': img + 1 if img.min() == 0 else img, 'rng': rng})['img']
        ys, xs = np.nonzero((out == 0).all(-1))
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert 38 <= h <= 76 and 38 <= w <= 76 and (out == 0).all(-1).sum() == h * w
    never = Albumentation([dict(type='Blur', p=0.0)])
    assert never({'img': img})['img'] is img
    with pytest.raises(ValueError, match='albumentations'):
        Albumentation([dict(type='NoSuchTransform')])


def test_photometric_distortion_keeps_image_format():
    img = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    rng = np.random.default_rng(3)
    outs = [PhotometricDistortion()({'img': img.copy(), 'rng': rng})['img'] for _ in range(20)]
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    assert sum(not np.array_equal(o, img) for o in outs) >= 15


def test_missing_and_corrupt_images_name_the_file(tmp_path):
    pipe = Compose([LoadImage(), GetBBoxCenterScale(), TopdownAffine(input_size=(64, 64))])
    info = {'img_path': str(tmp_path / 'gone.jpg'), 'bbox': np.array([[0, 0, 10, 10]], np.float32)}
    with pytest.raises(ImageLoadError, match='gone.jpg'):
        pipe(dict(info))
    good = cv2.imencode('.jpg', np.zeros((32, 32, 3), np.uint8))[1].tobytes()
    (tmp_path / 'cut.jpg').write_bytes(good[:200])  # header intact, data truncated
    (tmp_path / 'junk.jpg').write_bytes(b'not an image at all')
    for name in ('cut.jpg', 'junk.jpg'):
        with pytest.raises(ImageLoadError, match=name):
            pipe({**info, 'img_path': str(tmp_path / name)})


@needs_weights
def test_skip_bad_images_replaces_sample_with_warning(tmp_path, caplog, monkeypatch):
    # the datasets log to the project logger, which train.py (run earlier in the session) keeps to itself
    monkeypatch.setattr(logging.getLogger('mmpose_clean'), 'propagate', True)
    ann = write_tiny_coco(tmp_path, n_people=2)
    data = json.loads(ann.read_text())
    data['images'].append({**data['images'][0], 'id': 2, 'file_name': 'img2.jpg'})
    data['annotations'][1]['image_id'] = 2
    ann.write_text(json.dumps(data))
    (tmp_path / 'img1.jpg').rename(tmp_path / 'img2.jpg')
    cfg = dict(type='CocoDataset', ann_file=str(ann), data_prefix=dict(img=str(tmp_path)),
               pipeline=rle_pipelines()['train_pipeline'])
    with pytest.raises(ImageLoadError, match='img1.jpg'):
        build_dataset(cfg)[0]
    ds = build_dataset({**cfg, 'skip_bad_images': True})
    with caplog.at_level(logging.WARNING):
        sample = ds[0]
    assert sample['meta']['img_id'] == 2 and sample['inputs'].shape == (3, 192, 192)
    assert 'img1.jpg' in caplog.text and 'skip_bad_images' in caplog.text


@needs_coco
@needs_weights
@pytest.mark.slow
def test_train_pipeline_statistics_match_mmpose():
    # MMPose 1.3.2, the original RLE train pipeline (up to GenerateTarget) on the 12 COCO sample
    # instances, 6000 draws: visible label mean (x, y) (0.4979, 0.4581), std (0.1837, 0.2226);
    # keypoint weight mean 0.776; crop mean 103.79; flip rate 0.515; rotation std 33.51 deg;
    # final box width mean 224.6 px, std 109.0 px.
    train = rle_pipelines()['train_pipeline'][:-1]
    ds = build_dataset(coco_cfg(pipeline=train))
    n = 1500
    samples = [ds[(i % len(ds), 10**6 + i)] for i in range(n)]
    labels = np.array([s['keypoint_labels'][0] for s in samples])
    weights = np.array([s['keypoint_weights'][0] for s in samples])
    vis = labels[weights > 0]
    np.testing.assert_allclose(vis.mean(0), [0.4979, 0.4581], atol=0.02)
    np.testing.assert_allclose(vis.std(0), [0.1837, 0.2226], atol=0.012)
    assert weights.mean() == pytest.approx(0.776, abs=0.02)
    assert np.mean([s['img'].mean() for s in samples]) == pytest.approx(103.79, abs=3.5)
    assert np.mean([s['flip'] for s in samples]) == pytest.approx(0.515, abs=0.05)
    assert np.std([s['bbox_rotation'][0] for s in samples]) == pytest.approx(33.51, abs=1.7)
    widths = [s['bbox_scale'][0, 0] for s in samples]
    assert np.mean(widths) == pytest.approx(224.6, abs=12) and np.std(widths) == pytest.approx(109.0, abs=9)
