"""Batched photometric augmentations against the per-sample OpenCV transforms they mirror.

For 2,000 seeds each, the per-sample transform runs on one image with ``results['rng'] =
default_rng(seed)`` and the batched ``draw`` runs on another ``default_rng(seed)``; the batched
``apply`` on the whole batch must give the same pixels (bit-exact), and ``draw`` must leave the
generator in the same state (it made the same calls, so the parameters have the same distribution
and the rest of the sample's pipeline draws the same values).
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from datasets.batched.hsv import bgr_to_hsv, hsv_to_bgr
from datasets.batched.photometric import (
    BatchedBlur,
    BatchedCoarseDropout,
    UnsupportedTransformError,
    apply_groups,
    build_batched_photometric,
    plan_groups,
    stack_params,
)
from datasets.transforms import Albumentation, PhotometricDistortion, YOLOXHSVRandomAug

N_DRAWS = 2000


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def _to_numpy(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).numpy()


def _apply(step, images: torch.Tensor, draws: list[dict]) -> torch.Tensor:
    """``step`` on the samples whose draws chose it, grouped on the host as the collate does."""
    groups = plan_groups([step.group_of(d) for d in draws], draws)
    on = images.device
    groups = [g._replace(index=None if g.index is None else torch.from_numpy(g.index).to(on),
                         params={k: torch.from_numpy(v).to(on) for k, v in g.params.items()}) for g in groups]
    return apply_groups(step, images, groups)


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
        rng = np.random.default_rng(seed)
        expected.append(per_sample({'img': img.copy(), 'rng': rng})['img'])
        mirror = np.random.default_rng(seed)
        for t, samples in zip(batched, draws):
            samples.append(t.draw(mirror))
        assert mirror.bit_generator.state == rng.bit_generator.state, f'seed {seed}: different draws'
    out = _to_tensor(images)
    for t, samples in zip(batched, draws):
        out = _apply(t, out, samples)
    return np.stack(expected), _to_numpy(out), [stack_params(samples) for samples in draws]


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
    images = np.random.default_rng(4).integers(0, 256, (7, 40, 24, 3), dtype=np.uint8)
    sizes = [1, 3, 5, 7, 9, 3, 1]
    draws = [{'ksize': np.int64(k)} for k in sizes]
    blur, median = build_batched_photometric(dict(type='Albumentation', transforms=[
        dict(type='Blur', blur_limit=9), dict(type='MedianBlur', blur_limit=9)]))
    groups = plan_groups([blur.group_of(d) for d in draws], draws)
    assert [(g.key, g.index.tolist()) for g in groups] == [(3, [1, 5]), (5, [2]), (7, [3]), (9, [4])]
    np.testing.assert_array_equal(_to_numpy(_apply(blur, _to_tensor(images), draws)),
                                  [cv2.blur(img, (k, k)) if k > 1 else img for img, k in zip(images, sizes)])
    np.testing.assert_array_equal(_to_numpy(_apply(median, _to_tensor(images), draws)),
                                  [cv2.medianBlur(img, k) if k > 1 else img for img, k in zip(images, sizes)])


def test_steps_run_only_on_the_samples_their_coins_chose():
    # p = 0.1: most samples skip Blur, so the step sees only the chosen ones; a batch that no
    # sample chose runs no kernel at all
    blur, = build_batched_photometric(dict(type='Albumentation', transforms=[dict(type='Blur', p=0.1)]))
    rng = np.random.default_rng(0)
    draws = [blur.draw(rng) for _ in range(64)]
    chosen = [i for i, d in enumerate(draws) if d['ksize'] > 1]
    seen = []
    original = blur.apply
    blur.apply = lambda images, params, key: (seen.append(len(images)), original(images, params, key))[1]
    images = torch.from_numpy(rng.integers(0, 256, (64, 3, 8, 8), dtype=np.uint8))
    _apply(blur, images.clone(), draws)
    assert 0 < len(chosen) < 20 and sum(seen) == len(chosen)
    seen.clear()
    skipped = [{'ksize': np.int64(1)}] * 4
    assert plan_groups([blur.group_of(d) for d in skipped], skipped) == []
    distortion, = build_batched_photometric(dict(type='PhotometricDistortion'))
    draws = [distortion.draw(rng) for _ in range(32)]
    keys = {g.key: len(g.params['hsv']) for g in plan_groups([distortion.group_of(d) for d in draws], draws)}
    assert keys == {True: sum(bool(d['hsv']) for d in draws), False: sum(not d['hsv'] for d in draws)}


def test_apply_runs_on_the_meta_device():
    # Meta tensors have no values: any host read-back (.item(), bool(), data-dependent shapes) raises.
    cfgs = [dict(type='YOLOXHSVRandomAug'), dict(type='PhotometricDistortion'),
            dict(type='Albumentation', transforms=ALBUMENTATION_CASES[1])]
    images = torch.empty(4, 3, 32, 48, dtype=torch.uint8, device='meta')
    rng = np.random.default_rng(0)
    for cfg in cfgs:
        for t in build_batched_photometric(cfg, image_size=(48, 32)):
            out = _apply(t, images, [t.draw(rng) for _ in range(4)])
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
    drop = BatchedCoarseDropout(image_size=(16, 8), p=1.0)
    with pytest.raises(ValueError, match=r'\(16, 8\).*8x16'):
        _apply(drop, torch.zeros(1, 3, 16, 8, dtype=torch.uint8), [drop.draw(np.random.default_rng())])
    with pytest.raises(ValueError, match='sample 1'):
        stack_params([{'a': 1}, {'b': 1}])
