"""Batched photometric augmentations against the per-sample OpenCV transforms they mirror.

For 2,000 seeds each, the per-sample transform runs on one image inside ``seeded_rng(seed)`` and
the batched ``draw`` runs on ``default_rng(seed)``; the batched ``apply`` on the whole batch must
give the same pixels (bit-exact), and ``draw`` must leave the generator in the same state (it made
the same calls, so the parameters have the same distribution and the rest of the sample's
pipeline draws the same values).
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from datasets.batched.photometric import (
    BatchedBlur,
    BatchedCoarseDropout,
    UnsupportedTransformError,
    bgr_to_hsv,
    build_batched_photometric,
    hsv_to_bgr,
    stack_params,
)
from datasets.transforms import Albumentation, PhotometricDistortion, YOLOXHSVRandomAug
from datasets.transforms.rng import seeded_rng

N_DRAWS = 2000


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def _to_numpy(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).numpy()


def _lattice_image(step: int, width: int) -> np.ndarray:
    """Every channel triple on a ``step`` lattice (plus 255) as one uint8 image ``width`` px wide."""
    levels = np.unique(np.r_[np.arange(0, 256, step), 255]).astype(np.uint8)
    triples = np.stack(np.meshgrid(levels, levels, levels, indexing='ij'), -1).reshape(-1, 3)
    triples = np.concatenate([triples, triples[:(-len(triples)) % width]])
    return triples.reshape(-1, width, 3)


def test_hsv_conversions_equal_opencv():
    # The full 2^24 inputs agree too (checked once, about 10 s); here a 1/27 lattice of them.
    img = _lattice_image(3, 128)
    batch = _to_tensor(img[None])
    np.testing.assert_array_equal(_to_numpy(bgr_to_hsv(batch))[0], cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    np.testing.assert_array_equal(_to_numpy(hsv_to_bgr(batch))[0], cv2.cvtColor(img, cv2.COLOR_HSV2BGR))


def _run_both(cfg: dict, per_sample, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Per-sample outputs, batched outputs and each batched transform's stacked params (numpy)."""
    height, width = images.shape[1:3]
    batched = build_batched_photometric(cfg, image_size=(width, height))
    expected, draws = [], [[] for _ in batched]
    for seed, img in enumerate(images):
        with seeded_rng(seed) as rng:
            expected.append(per_sample({'img': img.copy()})['img'])
        mirror = np.random.default_rng(seed)
        for t, samples in zip(batched, draws):
            samples.append(t.draw(mirror))
        assert mirror.bit_generator.state == rng.bit_generator.state, f'seed {seed}: different draws'
    out = _to_tensor(images)
    params = [stack_params(samples) for samples in draws]
    for t, p in zip(batched, params):
        out = t.apply(out, p)
    return np.stack(expected), _to_numpy(out), [{k: v.numpy() for k, v in p.items()} for p in params]


@pytest.mark.parametrize('cfg', [dict(type='YOLOXHSVRandomAug'),
                                 dict(type='YOLOXHSVRandomAug', hue_delta=40, saturation_delta=90,
                                      value_delta=5)])
def test_yolox_hsv_equals_per_sample(cfg):
    images = np.random.default_rng(1).integers(0, 256, (N_DRAWS, 4, 32, 3), dtype=np.uint8)
    per_sample = YOLOXHSVRandomAug(**{k: v for k, v in cfg.items() if k != 'type'})
    expected, out, [params] = _run_both(cfg, per_sample, images)
    np.testing.assert_array_equal(out, expected)
    assert params['gains'].shape == (N_DRAWS, 3) and (params['gains'] == 0).mean() > 0.45


@pytest.mark.parametrize('args', [{}, dict(brightness_delta=80, contrast_range=(0.2, 2.5),
                                          saturation_range=(0.0, 3.0), hue_delta=120)])
def test_photometric_distortion_equals_per_sample(args):
    images = np.random.default_rng(2).integers(0, 256, (N_DRAWS, 4, 32, 3), dtype=np.uint8)
    expected, out, [params] = _run_both(dict(type='PhotometricDistortion', **args),
                                        PhotometricDistortion(**args), images)
    np.testing.assert_array_equal(out, expected)
    # every branch ran: brightness 1/2, contrast 1/4, HSV 3/4, saturation and hue 1/2, swap 1/2 * 5/6
    for key, identity, share in [('beta', 0, 1 / 2), ('alpha', 1, 1 / 4), ('saturation', 1, 1 / 2),
                                 ('hue', 0, 1 / 2)]:
        assert (params[key] != identity).mean() == pytest.approx(share, abs=0.05), key
    assert params['hsv'].mean() == pytest.approx(3 / 4, abs=0.05)
    assert (params['order'] != np.arange(3)).any(1).mean() == pytest.approx(5 / 12, abs=0.05)


ALBUMENTATION_CASES = [
    [dict(type='Blur', p=0.4), dict(type='MedianBlur', p=0.4),
     dict(type='CoarseDropout', max_holes=1, max_height=0.4, max_width=0.4, min_holes=1, min_height=0.2,
          min_width=0.2, p=0.5)],
    [dict(type='MedianBlur', blur_limit=(5, 9), p=0.7), dict(type='Blur', blur_limit=9, p=1.0),
     dict(type='CoarseDropout', max_holes=4, max_height=5, max_width=3, min_holes=2, min_height=1,
          min_width=2, fill_value=(10, 200, 255), p=0.8)],
]


@pytest.mark.parametrize('members', ALBUMENTATION_CASES)
def test_albumentation_members_equal_per_sample(members):
    images = np.random.default_rng(3).integers(0, 256, (N_DRAWS, 9, 12, 3), dtype=np.uint8)
    expected, out, params = _run_both(dict(type='Albumentation', transforms=members), Albumentation(members),
                                      images)
    np.testing.assert_array_equal(out, expected)
    for member, p in zip(members, params):
        applied = p['ksize'] > 1 if 'ksize' in p else (p['holes'][..., 2:] > 0).any((1, 2))
        assert applied.mean() == pytest.approx(member['p'], abs=0.05), member['type']


def test_mixed_kernel_sizes_in_one_batch_equal_opencv():
    images = np.random.default_rng(4).integers(0, 256, (5, 40, 24, 3), dtype=np.uint8)
    sizes = np.array([1, 3, 5, 7, 9])
    params = {'ksize': torch.from_numpy(sizes)}
    blur, median = build_batched_photometric(dict(type='Albumentation', transforms=[
        dict(type='Blur', blur_limit=9), dict(type='MedianBlur', blur_limit=9)]))
    np.testing.assert_array_equal(_to_numpy(blur.apply(_to_tensor(images), params)),
                                  [cv2.blur(img, (k, k)) for img, k in zip(images, sizes)])
    np.testing.assert_array_equal(_to_numpy(median.apply(_to_tensor(images), params)),
                                  [cv2.medianBlur(img, k) if k > 1 else img for img, k in zip(images, sizes)])


def test_apply_runs_on_the_meta_device():
    # Meta tensors have no values: any host read-back (.item(), bool(), data-dependent shapes) raises.
    cfgs = [dict(type='YOLOXHSVRandomAug'), dict(type='PhotometricDistortion'),
            dict(type='Albumentation', transforms=ALBUMENTATION_CASES[1])]
    images = torch.empty(4, 3, 32, 48, dtype=torch.uint8, device='meta')
    rng = np.random.default_rng(0)
    for cfg in cfgs:
        for t in build_batched_photometric(cfg, image_size=(48, 32)):
            out = t.apply(images, stack_params([t.draw(rng) for _ in range(4)], device='meta'))
            assert out.shape == images.shape and out.dtype == torch.uint8 and out.device.type == 'meta'


def test_build_and_input_errors():
    with pytest.raises(UnsupportedTransformError, match="'RandomGrayscale'") as info:
        build_batched_photometric(dict(type='RandomGrayscale'))
    assert isinstance(info.value, ValueError) and info.value.transform_type == 'RandomGrayscale'
    with pytest.raises(UnsupportedTransformError, match="'GaussNoise'.*Albumentation"):
        build_batched_photometric(dict(type='Albumentation', transforms=[dict(type='GaussNoise')]))
    with pytest.raises(UnsupportedTransformError, match='even kernel sizes'):
        BatchedBlur(blur_limit=(4, 8))
    with pytest.raises(ValueError, match='keymap'):
        build_batched_photometric(dict(type='Albumentation', transforms=[], keymap={'img': 'x'}))
    with pytest.raises(ValueError, match='image_size'):
        build_batched_photometric(dict(type='Albumentation', transforms=[dict(type='CoarseDropout')]))
    drop = BatchedCoarseDropout(image_size=(16, 8))
    with pytest.raises(ValueError, match=r'\(16, 8\).*8x16'):
        drop.apply(torch.zeros(1, 3, 16, 8, dtype=torch.uint8),
                   stack_params([drop.draw(np.random.default_rng())]))
    with pytest.raises(ValueError, match='sample 1'):
        stack_params([{'a': 1}, {'b': 1}])
