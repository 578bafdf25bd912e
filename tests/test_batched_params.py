"""The batched pipeline's loader-side parameter draws follow the per-sample pipeline's distributions:
two-sample tests (Kolmogorov-Smirnov, chi-square) on 2000 draws each, from disjoint sample seeds."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from datasets import build_dataset
from datasets.batched import RawSampleDataset, dataset_recipes
from datasets.batched.geometry import FLIP_CODES
from datasets.transforms import GetBBoxCenterScale, RandomBBoxTransform, RandomFlip, RandomHalfBody
from tests.conftest import coco_cfg, needs_coco

N = 2000
P_MIN = 1e-3  # fixed seeds: the p-values are fixed too; a real mismatch gives p << 1e-6 at this N
FLIP = dict(direction=['horizontal', 'vertical'], prob=[0.4, 0.2])
HALF_BODY = dict(prob=0.5, upper_prioritized_prob=0.7)
BBOX = dict(shift_factor=0.16, shift_prob=0.3, scale_factor=[0.6, 1.4], scale_prob=0.8, rotate_factor=80,
            rotate_prob=0.6)


def per_sample_draws(dataset, seeds: range) -> dict[str, np.ndarray]:
    """Run the per-sample box transforms step by step and read back what they drew."""
    steps = [GetBBoxCenterScale(), RandomFlip(**FLIP), RandomHalfBody(**HALF_BODY),
             RandomBBoxTransform(**BBOX)]
    out = {k: [] for k in ('flip', 'half_body', 'shift_x', 'shift_y', 'scale', 'rotation')}
    for seed in seeds:
        info = dataset.get_data_info(seed % len(dataset))
        info.update(img=np.zeros((2, 2, 3), np.uint8), img_shape=(480, 640))
        info['rng'] = np.random.default_rng(seed)  # the sample's generator, as the dataset gives it
        results = steps[1](steps[0](info))
        center, scale = results['bbox_center'].copy(), results['bbox_scale'].copy()
        results = steps[2](results)
        out['half_body'].append(not np.array_equal(center, results['bbox_center']))
        center, scale = results['bbox_center'].copy(), results['bbox_scale'].copy()
        results = steps[3](results)
        out['flip'].append(FLIP_CODES[results['flip_direction']])
        shift = (results['bbox_center'] - center)[0] / scale[0]
        out['shift_x'].append(shift[0])
        out['shift_y'].append(shift[1])
        out['scale'].append(results['bbox_scale'][0, 0] / scale[0, 0])
        out['rotation'].append(results['bbox_rotation'][0])
    return {k: np.asarray(v) for k, v in out.items()}


def batched_draws(cfg: dict, seeds: range) -> dict[str, np.ndarray]:
    raw_ds = RawSampleDataset(build_dataset(cfg), dataset_recipes(cfg))
    samples = [raw_ds[(seed % len(raw_ds), seed)] for seed in seeds]
    return {'flip': np.array([s['flip'] for s in samples]),
            'half_body': np.array([s['half_body'].any() for s in samples]),
            'shift_x': np.array([s['shift'][0] for s in samples]),
            'shift_y': np.array([s['shift'][1] for s in samples]),
            'scale': np.array([s['scale'] for s in samples]),
            'rotation': np.array([s['rotation'] for s in samples])}


def box_pipeline(size: tuple[int, int]) -> list[dict]:
    return [dict(type='LoadImage'), dict(type='GetBBoxCenterScale'), dict(type='RandomFlip', **FLIP),
            dict(type='RandomHalfBody', **HALF_BODY), dict(type='RandomBBoxTransform', **BBOX),
            dict(type='TopdownAffine', input_size=size),
            dict(type='GenerateTarget', encoder=dict(type='RegressionLabel', input_size=size)),
            dict(type='PackPoseInputs')]


@pytest.fixture(scope='module')
def draws():
    cfg = coco_cfg(pipeline=box_pipeline((192, 256)))
    return per_sample_draws(build_dataset(cfg), range(N)), batched_draws(cfg, range(N, 2 * N))


@needs_coco
@pytest.mark.parametrize('name', ['flip', 'half_body'])
def test_discrete_draws_match(draws, name):
    per_sample, batched = draws
    values = sorted(set(per_sample[name]) | set(batched[name]))
    table = [[np.sum(d[name] == v) for v in values] for d in (per_sample, batched)]
    assert len(values) >= 2
    assert stats.chi2_contingency(table).pvalue > P_MIN, table


@needs_coco
@pytest.mark.parametrize('name', ['shift_x', 'shift_y', 'scale', 'rotation'])
def test_continuous_draws_match(draws, name):
    per_sample, batched = draws
    assert np.std(batched[name]) > 0
    assert stats.ks_2samp(per_sample[name], batched[name]).pvalue > P_MIN


@needs_coco
def test_same_seed_draws_the_same_parameters():
    cfg = coco_cfg(pipeline=box_pipeline((64, 64)))
    seeds = range(200)
    a, b = per_sample_draws(build_dataset(cfg), seeds), batched_draws(cfg, seeds)
    for key in a:
        np.testing.assert_allclose(a[key].astype(np.float64), b[key].astype(np.float64), rtol=1e-5, atol=1e-6,
                                   err_msg=key)


@needs_coco
def test_repeat_dataset_draws_through_the_repeated_pipeline():
    cfg = coco_cfg(pipeline=box_pipeline((64, 64)))
    repeated = {'type': 'RepeatDataset', 'times': 3, 'dataset': cfg}
    seeds = range(20)
    plain, wrapped = batched_draws(cfg, seeds), batched_draws(repeated, seeds)
    for key in plain:
        np.testing.assert_array_equal(plain[key], wrapped[key], err_msg=key)
