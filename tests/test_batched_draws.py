"""The per-sample draws that the batched loader calls for every sample, written for speed (Python numbers
instead of small numpy arrays, a batch of generators seeded together), give exactly what the plain
numpy formulas give for the same seeds, and leave the generator in the same state: a run's
augmentations do not change with this code, and resuming stays bit-exact."""
from __future__ import annotations

import numpy as np
import pytest

from datasets.batched.photometric import BatchedCoarseDropout
from datasets.transforms import rng as rng_module
from datasets.transforms.geometric import RandomBBoxTransform, RandomFlip, RandomHalfBody
from datasets.transforms.photometric import YOLOXHSVRandomAug
from datasets.transforms.rng import sample_generators, truncated_normal

SEEDS = range(1000)


def _reference_truncated_normal(rng, size, low=-1.0, high=1.0):
    out = rng.standard_normal(size)
    bad = (out < low) | (out > high)
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = (out < low) | (out > high)
    return out.astype(np.float32)


def _reference_bbox_params(t: RandomBBoxTransform, n: int, rng):
    v = _reference_truncated_normal(rng, (n, 4))
    offset = np.where(rng.random((n, 1)) < t.shift_prob, v[:, :2] * t.shift_factor, np.float32(0))
    lo, hi = t.scale_factor
    scale = np.where(rng.random((n, 1)) < t.scale_prob,
                     v[:, 2:3] * np.float32((hi - lo) * 0.5) + np.float32((hi + lo) * 0.5), np.float32(1))
    rotate = np.where(rng.random(n) < t.rotate_prob, v[:, 3] * np.float32(t.rotate_factor), np.float32(0))
    return offset, scale, rotate


def _reference_half_body(t: RandomHalfBody, visible, upper_ids, lower_ids, rng):
    if visible.sum() < t.min_total_keypoints or rng.random() > t.prob:
        return None
    upper = [i for i in upper_ids if visible[i] > 0]
    lower = [i for i in lower_ids if visible[i] > 0]
    prefer_upper = rng.random() < t.upper_prioritized_prob
    if len(upper) < t.min_upper_keypoints and len(lower) < t.min_lower_keypoints:
        return None
    if len(lower) < t.min_lower_keypoints:
        return upper
    if len(upper) < t.min_upper_keypoints:
        return lower
    return upper if prefer_upper else lower


def _reference_gains(t: YOLOXHSVRandomAug, rng):
    gains = rng.uniform(-1, 1, 3) * [t.hue_delta, t.saturation_delta, t.value_delta]
    gains *= rng.integers(0, 2, 3)
    return gains.astype(np.int16)


def _reference_dropout(t: BatchedCoarseDropout, rng):
    holes = np.zeros((t.reference.max_holes, 4), np.int64)
    if t.reference.p >= 1.0 or rng.random() < t.reference.p:  # Albumentation's coin
        width, height = t.image_size
        for i, hole in enumerate(t.reference.holes(rng, height, width)):
            holes[i] = hole
    return holes, True if (holes[:, 2:] > 0).all(1).any() else None


def _same(a, b) -> bool:
    if not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray):  # a key, a direction, joint ids
        return type(a) is type(b) and a == b
    return (a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
            and np.array_equal(np.signbit(a), np.signbit(b)))


def _check(draw, reference, seeds=SEEDS) -> None:
    for seed in seeds:
        got_rng, ref_rng = np.random.default_rng(seed), np.random.default_rng(seed)
        got, expected = draw(got_rng), reference(ref_rng)
        if isinstance(expected, tuple):
            assert len(got) == len(expected) and all(_same(g, e) for g, e in zip(got, expected)), seed
        else:
            assert (got is None and expected is None) or _same(got, expected), seed
        assert got_rng.bit_generator.state == ref_rng.bit_generator.state, seed


@pytest.mark.parametrize('kwargs', [{}, dict(scale_factor=[0.6, 1.4], rotate_factor=80),
                                    dict(shift_factor=0., scale_factor=[0.75, 1.25], rotate_factor=60),
                                    dict(shift_factor=0, shift_prob=1, scale_prob=0.5, rotate_prob=1.0)])
@pytest.mark.parametrize('boxes', [1, 3])
def test_box_jitter_is_the_numpy_formula(kwargs, boxes):
    t = RandomBBoxTransform(**kwargs)
    _check(lambda rng: t.get_params(boxes, rng), lambda rng: _reference_bbox_params(t, boxes, rng))
    _check(lambda rng: truncated_normal(rng, (boxes, 5), -0.5, 2.0),
           lambda rng: _reference_truncated_normal(rng, (boxes, 5), -0.5, 2.0))


@pytest.mark.parametrize('kwargs, probs', [
    (dict(prob=0.5), [0.5]), (dict(prob=[0.2, 0.3], direction=['horizontal', 'vertical']), [0.2, 0.3]),
    (dict(prob=0.9, direction=['horizontal', 'vertical', 'diagonal']), [0.9 / 3] * 3)])
def test_flip_direction_is_the_searchsorted_choice(kwargs, probs):
    t = RandomFlip(**kwargs)
    choices = [*kwargs.get('direction', ['horizontal']), None]
    _check(t.draw_direction, lambda rng: choices[np.searchsorted(np.cumsum(probs), rng.random(), 'right')])


def test_half_body_choice_is_the_reference():
    t = RandomHalfBody(min_total_keypoints=3, prob=0.9)
    upper, lower = list(range(11)), list(range(11, 17))
    draws = np.random.default_rng(5)
    for visible in [(draws.random(17) < p).astype(np.float32) for p in (0.2, 0.5, 0.9)] + [
            draws.random(17).astype(np.float32)]:
        _check(lambda rng, vis=visible: t.select(vis, upper, lower, rng),
               lambda rng, vis=visible: _reference_half_body(t, vis, upper, lower, rng), range(500))


@pytest.mark.parametrize('kwargs', [{}, dict(hue_delta=5.5, saturation_delta=0, value_delta=255)])
def test_hsv_gains_are_the_numpy_formula(kwargs):
    t = YOLOXHSVRandomAug(**kwargs)
    _check(t.get_gains, lambda rng: _reference_gains(t, rng))
    # after a 32-bit draw, whose other half the generator keeps for the next one
    _check(lambda rng: (rng.integers(0, 5), t.get_gains(rng))[1],
           lambda rng: (rng.integers(0, 5), _reference_gains(t, rng))[1])


@pytest.mark.parametrize('kwargs', [
    dict(max_holes=1, max_height=0.4, max_width=0.4, min_holes=1, min_height=0.2, min_width=0.2, p=1.0),
    dict(max_holes=5, max_height=20, max_width=30, min_holes=2, min_height=3, min_width=4, p=0.5)])
def test_dropout_holes_and_group_are_the_reference(kwargs):
    t = BatchedCoarseDropout(image_size=(192, 256), **kwargs)

    def draw(rng):
        params = t.draw(rng)
        return params['holes'], t.group_of(params)
    _check(draw, lambda rng: _reference_dropout(t, rng))


def test_generators_of_a_batch_are_default_rng():
    seeds = [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 63 - 1, 2 ** 64 - 1, 2 ** 64, 2 ** 70 + 5, np.int64(7),
             *np.random.default_rng(0).integers(0, 2 ** 63 - 1, 2000).tolist()]
    for seed, rng in zip(seeds, sample_generators(seeds)):
        reference = np.random.default_rng(seed)
        assert rng.bit_generator.state == reference.bit_generator.state, seed
        assert rng.integers(0, 1000, 3).tolist() == reference.integers(0, 1000, 3).tolist()
    unseeded = sample_generators([None, None])
    assert unseeded[0].random() != unseeded[1].random()  # fresh entropy, as default_rng(None)
    with pytest.raises(ValueError):
        sample_generators([-1])


def test_generators_fall_back_to_numpy_if_its_seeding_ever_differs(monkeypatch):
    monkeypatch.setattr(rng_module, '_batched_seeding_ok', None)
    monkeypatch.setattr(rng_module, '_pcg64_seed_words', lambda seeds: np.zeros((len(seeds), 4), np.uint64))
    seeds = [3, 2 ** 40, 11]
    for seed, rng in zip(seeds, sample_generators(seeds)):
        assert rng.bit_generator.state == np.random.default_rng(seed).bit_generator.state
    assert rng_module._batched_seeding_ok is False  # and stays so in this process
    assert sample_generators([5])[0].random() == np.random.default_rng(5).random()
