"""Codec tests: round trips, edge cases, and agreement with MMPose 1.3.2.

``tests/data/codec_reference.npz`` holds outputs of MMPose 1.3.2's codecs (run in a separate
environment with NumPy 1.26) for the keypoints stored in it (``kp1``/``vis1``: one instance,
``kp2``/``vis2``: two instances; K=17 in a 192x256 input with corner, border, just-outside,
far-outside, invisible and visibility-0.3/0.5 keypoints on instance 0). Larger inputs (decoder test
arrays) are rebuilt here with :func:`pseudo_noise`, which the generator used too. Large encoded arrays
are stored as per-map checksums (sum, sum of squares, maximum, arg-max, first moments) plus one full map.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codec import IntegralRegressionLabel, MSRAHeatmap, RegressionLabel, SimCCLabel, UDPHeatmap, build_codec
from codec.heatmap_targets import (
    generate_gaussian_heatmaps,
    generate_offset_heatmap,
    generate_udp_gaussian_heatmaps,
    generate_unbiased_gaussian_heatmaps,
)
from utils.registry import CODECS

REF = dict(np.load(Path(__file__).parent / 'data' / 'codec_reference.npz'))
W, H = 192, 256


def pseudo_noise(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Deterministic uniform [0, 1) values from integer arithmetic (identical under any NumPy)."""
    i = np.arange(int(np.prod(shape)), dtype=np.int64)
    return (((i * 1103515245 + seed * 7919 + 12345) % 2**31) / 2**31).reshape(shape)


def random_keypoints(n: int, k: int = 17, seed: int = 0, size: tuple[int, int] = (W, H)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, k, 2)) * np.subtract(size, 1)).astype(np.float32)


# ---------------------------------------------------------------- registry

@pytest.mark.parametrize('name', ['RegressionLabel', 'SimCCLabel', 'MSRAHeatmap', 'UDPHeatmap',
                                  'IntegralRegressionLabel'])
def test_registered_and_built(name):
    assert name in CODECS
    extra = {} if name in ('RegressionLabel', 'SimCCLabel') else dict(heatmap_size=(48, 64), sigma=2.0)
    codec = build_codec(dict(type=name, input_size=(W, H), **extra))
    assert type(codec).__name__ == name


def test_build_codec_errors():
    with pytest.raises(KeyError, match='SimCCLabl'):
        build_codec(dict(type='SimCCLabl', input_size=(W, H)))
    with pytest.raises(ValueError, match='smoothing_type'):
        SimCCLabel((W, H), smoothing_type='bogus')
    with pytest.raises(ValueError, match='label_smooth_weight'):
        SimCCLabel((W, H), label_smooth_weight=0.1)
    with pytest.raises(ValueError, match='keypoints_visible'):
        RegressionLabel((W, H)).encode(np.zeros((1, 17, 2)), np.ones((17,)))
    with pytest.raises(ValueError, match='single instance'):
        MSRAHeatmap((W, H), (48, 64), 2.0).encode(np.zeros((2, 17, 2)))
    with pytest.raises(ValueError, match='heatmap_type'):
        UDPHeatmap((W, H), (48, 64), heatmap_type='bogus')


# ---------------------------------------------------------------- RegressionLabel

def test_regression_round_trip():
    codec = RegressionLabel((W, H))
    kp = random_keypoints(3, seed=1)
    enc = codec.encode(kp)
    assert enc['keypoint_labels'].shape == (3, 17, 2) and enc['keypoint_labels'].dtype == np.float32
    assert enc['keypoint_weights'].dtype == np.float32 and enc['keypoint_weights'].all()
    dec, scores = codec.decode(enc['keypoint_labels'])
    np.testing.assert_allclose(dec, kp, atol=1e-4)
    assert scores.shape == (3, 17) and (scores == 1).all()


def test_regression_matches_mmpose():
    codec = RegressionLabel((W, H))
    enc = codec.encode(REF['kp2'], REF['vis2'])
    np.testing.assert_array_equal(enc['keypoint_labels'], REF['reg_enc/keypoint_labels'])
    np.testing.assert_array_equal(enc['keypoint_weights'], REF['reg_enc/keypoint_weights'])
    # corners inside; w - 0.5, -0.4, far outside and visibility <= 0.5 get weight 0
    np.testing.assert_array_equal(enc['keypoint_weights'][0, :13],
                                  [1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
    dec_in = (pseudo_noise((2, 17, 4), 1) * 1.2 - 0.1).astype(np.float32)
    for d, key in ((4, 'reg_dec4'), (2, 'reg_dec2')):
        kp, score = codec.decode(dec_in[..., :d])
        np.testing.assert_allclose(kp, REF[f'{key}/kp'], rtol=1e-6)
        np.testing.assert_allclose(score, REF[f'{key}/score'], rtol=1e-6)
        assert kp.dtype == REF[f'{key}/kp'].dtype and score.dtype == REF[f'{key}/score'].dtype
    with pytest.raises(ValueError, match='last dimension'):
        codec.decode(dec_in[..., :3])


# ---------------------------------------------------------------- SimCCLabel

SIMCC_CFGS = dict(
    simcc_g=dict(sigma=(4.9, 5.66), simcc_split_ratio=2.0),
    simcc_gn=dict(sigma=6.0, simcc_split_ratio=1.5, normalize=False),
    simcc_s=dict(smoothing_type='standard', simcc_split_ratio=2.0),
    simcc_sl=dict(smoothing_type='standard', simcc_split_ratio=3.0, label_smooth_weight=0.1),
)


@pytest.mark.parametrize('name', list(SIMCC_CFGS))
def test_simcc_encode_matches_mmpose(name):
    enc = SimCCLabel((W, H), **SIMCC_CFGS[name]).encode(REF['kp2'], REF['vis2'])
    shape = tuple(REF[f'{name}/shape'])
    assert enc['keypoint_x_labels'].shape == shape[:3]
    assert enc['keypoint_y_labels'].shape == shape[:2] + shape[3:]
    np.testing.assert_array_equal(enc['keypoint_weights'], REF[f'{name}/weights'])
    for ax in 'xy':
        lab = enc[f'keypoint_{ax}_labels']
        assert lab.dtype == np.float32
        np.testing.assert_array_equal(lab.argmax(-1), REF[f'{name}/{ax}_argmax'])
        np.testing.assert_allclose(lab.max(-1), REF[f'{name}/{ax}_max'], rtol=1e-6)
        np.testing.assert_allclose(lab.sum(-1), REF[f'{name}/{ax}_sum'], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(lab[0, 9], REF[f'{name}/{ax}_row0'], rtol=1e-6, atol=1e-7)


def test_simcc_round_trip():
    kp = random_keypoints(2, seed=3)
    for cfg, tol in (({'sigma': 6.0}, 0.25), ({'smoothing_type': 'standard'}, 0.25),
                     ({'sigma': 3.0, 'simcc_split_ratio': 3.0}, 1 / 6)):
        codec = SimCCLabel((W, H), **cfg)
        enc = codec.encode(kp)
        dec, scores = codec.decode(enc['keypoint_x_labels'], enc['keypoint_y_labels'])
        assert dec.shape == (2, 17, 2) and dec.dtype == np.float32 and scores.shape == (2, 17)
        assert np.abs(dec - kp).max() <= tol + 1e-5, cfg


def test_simcc_dark_round_trip():
    """DARK recovers the sub-bin position of an unrounded Gaussian (away from the border, where edge
    padding misleads it, in MMPose too)."""
    kp = 20 + random_keypoints(2, seed=5, size=(W - 40, H - 40))
    sigma, ratio = (4.9, 5.66), 2.0

    def pred(axis: int, bins: int) -> np.ndarray:
        grid = np.arange(bins, dtype=np.float32)
        return np.exp(-(grid - kp[..., axis, None] * ratio) ** 2 / (2 * sigma[axis] ** 2)).astype(np.float32)

    sx, sy = pred(0, int(W * ratio)), pred(1, int(H * ratio))
    dark, _ = SimCCLabel((W, H), sigma=sigma, use_dark=True).decode(sx, sy)
    plain, _ = SimCCLabel((W, H), sigma=sigma).decode(sx, sy)
    assert np.abs(plain - kp).max() <= 0.25 + 1e-5
    assert np.abs(dark - kp).max() < 0.05 < np.abs(plain - kp).max()


def test_simcc_decode_matches_mmpose():
    enc = SimCCLabel((W, H), sigma=(4.9, 5.66)).encode(REF['kp2'], REF['vis2'])
    sx = enc['keypoint_x_labels'] + (pseudo_noise(enc['keypoint_x_labels'].shape, 2) * 0.01 - 0.005)
    sy = enc['keypoint_y_labels'] + (pseudo_noise(enc['keypoint_y_labels'].shape, 3) * 0.01 - 0.005)
    sx, sy = sx.astype(np.float32), sy.astype(np.float32)
    sx[1, 3] = -0.1
    sy[1, 4] = 0  # an all-zero row: MMPose's DARK gives NaN here, we stay finite
    sx_in, sy_in = sx.copy(), sy.copy()
    for name, cfg in dict(plain={}, dark=dict(use_dark=True), vis=dict(decode_visibility=True)).items():
        codec = SimCCLabel((W, H), sigma=(4.9, 5.66), **cfg)
        kp, score = codec.decode(sx, sy)
        np.testing.assert_array_equal(sx, sx_in)  # inputs untouched
        np.testing.assert_array_equal(sy, sy_in)
        if name == 'vis':
            score, vis = score
            np.testing.assert_allclose(vis, REF['simcc_dec_vis/vis'], rtol=1e-5)
        ref_kp = REF[f'simcc_dec_{name}/kp']
        finite = np.isfinite(ref_kp)
        assert np.isfinite(kp).all() and finite.sum() >= ref_kp.size - 2
        np.testing.assert_allclose(kp[finite], ref_kp[finite], rtol=0, atol=1e-4)
        np.testing.assert_array_equal(score, REF[f'simcc_dec_{name}/score'])
        assert kp.dtype == ref_kp.dtype
    assert (kp[1, 3] == -0.5).all()  # score <= 0 -> -1 bins


def test_simcc_single_instance_input():
    codec = SimCCLabel((W, H), sigma=6.0)
    enc = codec.encode(random_keypoints(1, seed=4))
    kp, scores = codec.decode(enc['keypoint_x_labels'][0], enc['keypoint_y_labels'][0])
    assert kp.shape == (1, 17, 2) and scores.shape == (1, 17)


# ---------------------------------------------------------------- heatmap codecs

HM = (48, 64)
HEATMAP_CFGS = dict(
    msra=(MSRAHeatmap, dict(heatmap_size=HM, sigma=2.0)),
    msra15=(MSRAHeatmap, dict(heatmap_size=HM, sigma=1.5)),
    msra_dark=(MSRAHeatmap, dict(heatmap_size=HM, sigma=2.0, unbiased=True)),
    udp=(UDPHeatmap, dict(heatmap_size=HM, sigma=2.0)),
    udp3=(UDPHeatmap, dict(heatmap_size=HM, sigma=3.0, blur_kernel_size=17)),
    udp_comb=(UDPHeatmap, dict(heatmap_size=HM, heatmap_type='combined')),
)


def check_map_summary(prefix: str, maps: np.ndarray) -> None:
    """Compare (C, H, W) maps with the per-map checksums recorded from MMPose: sum, sum of squares,
    maximum, arg-max and first moments along x and y."""
    c, h, w = maps.shape
    assert maps.shape == tuple(REF[f'{prefix}/shape']) and maps.dtype == np.float32
    flat = maps.reshape(c, -1).astype(np.float64)
    ys, xs = np.mgrid[0:h, 0:w]
    np.testing.assert_array_equal(flat.argmax(1), REF[f'{prefix}/argmax'])
    for key, value in (('sum', flat.sum(1)), ('sumsq', (flat ** 2).sum(1)), ('max', flat.max(1)),
                       ('xmom', (flat * xs.ravel()).sum(1)), ('ymom', (flat * ys.ravel()).sum(1))):
        np.testing.assert_allclose(value, REF[f'{prefix}/{key}'], rtol=1e-5, atol=1e-5, err_msg=key)


@pytest.mark.parametrize('name', list(HEATMAP_CFGS))
def test_heatmap_encode_matches_mmpose(name):
    cls, cfg = HEATMAP_CFGS[name]
    enc = cls((W, H), **cfg).encode(REF['kp1'], REF['vis1'])
    check_map_summary(f'{name}_enc', enc['heatmaps'])
    np.testing.assert_allclose(enc['heatmaps'][2], REF[f'{name}_enc/map2'], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(enc['keypoint_weights'], REF[f'{name}_enc/weights'])
    assert enc['keypoint_weights'].dtype == REF[f'{name}_enc/weights'].dtype


@pytest.mark.parametrize('name', list(HEATMAP_CFGS))
def test_heatmap_decode_matches_mmpose(name):
    """Decode clean targets and noisy ones (with an all-zero and an all-negative map)."""
    cls, cfg = HEATMAP_CFGS[name]
    codec = cls((W, H), **cfg)
    clean = codec.encode(REF['kp1'], REF['vis1'])['heatmaps']
    noisy = clean + (pseudo_noise(clean.shape, 4) * 0.02 - 0.01).astype(np.float32)
    if name != 'udp_comb':
        noisy[12] = 0
        noisy[13] = -0.1 - noisy[13] ** 2
    for key, maps in ((f'{name}_dec', noisy), (f'{name}_dec_clean', clean)):
        before = maps.copy()
        kp, score = codec.decode(maps)
        np.testing.assert_array_equal(maps, before)  # input untouched
        ref_kp = REF[f'{key}/kp']
        assert kp.shape == ref_kp.shape == (1, 17, 2) and kp.dtype == ref_kp.dtype
        assert np.isfinite(kp).all()
        finite = np.isfinite(ref_kp)  # MMPose's UDP decoding gives NaN for all-zero maps
        assert finite.sum() >= ref_kp.size - 10
        np.testing.assert_allclose(kp[finite], ref_kp[finite], rtol=0, atol=1e-4, err_msg=key)
        np.testing.assert_allclose(score, REF[f'{key}/score'], rtol=1e-5, atol=1e-6, err_msg=key)
        assert score.dtype == REF[f'{key}/score'].dtype


def test_integral_regression_matches_mmpose():
    codec = IntegralRegressionLabel((W, H), heatmap_size=HM, sigma=2.0)
    enc = codec.encode(REF['kp1'], REF['vis1'])
    check_map_summary('integral_enc', enc['heatmaps'])
    np.testing.assert_array_equal(enc['keypoint_labels'], REF['integral_enc/keypoint_labels'])
    np.testing.assert_array_equal(enc['keypoint_weights'], REF['integral_enc/keypoint_weights'])
    sums = enc['heatmaps'].sum(axis=(1, 2))
    assert np.allclose(sums[sums > 0], 1, atol=1e-5) and (sums == 0).any()  # invisible -> empty map
    kp, _ = codec.decode(enc['keypoint_labels'])
    np.testing.assert_allclose(kp, REF['kp1'], atol=1e-4)


def interior_keypoints(seed: int, margin: int = 16) -> np.ndarray:
    return margin + random_keypoints(1, seed=seed, size=(W - 2 * margin, H - 2 * margin))


@pytest.mark.parametrize('sigma', [2.0, 1.5])
def test_msra_round_trip(sigma):
    # a non-integer 3-sigma radius shifts Gaussians within it of the left/top border (next test)
    kp = random_keypoints(1, seed=6) if sigma == 2.0 else interior_keypoints(6, margin=20)
    codec = MSRAHeatmap((W, H), HM, sigma)
    dec, scores = codec.decode(codec.encode(kp)['heatmaps'])
    stride = W / HM[0]
    assert np.abs(dec - kp).max() <= stride / 2 + 1e-4
    np.testing.assert_allclose(scores, 1)


def test_msra_border_shift_with_fractional_radius():
    """MMPose truncates the window corner towards zero, so with radius 4.5 a keypoint at heatmap
    x = 1.5 (rounded 2) peaks at x = 3; recorded from MMPose 1.3.2."""
    kp = np.array([[[6.0, 50.0], [100.0, 50.0]]], dtype=np.float32)
    maps = MSRAHeatmap((W, H), HM, 1.5).encode(kp)['heatmaps']
    assert [np.unravel_index(m.argmax(), m.shape) for m in maps] == [(13, 3), (13, 25)]


def test_msra_dark_round_trip():
    kp = interior_keypoints(7)
    codec = MSRAHeatmap((W, H), HM, 2.0, unbiased=True)
    dec, _ = codec.decode(codec.encode(kp)['heatmaps'])
    assert np.abs(dec - kp).max() < 0.1  # px, against stride / 2 = 2 px without DARK


def test_udp_round_trip():
    """Like MMPose, UDP encodes with (input - 1) / (heatmap - 1) but decodes with input / (heatmap - 1),
    which moves keypoints outwards by up to ~1 px; the round trip is exact up to that map."""
    kp = interior_keypoints(8)
    for cfg, tol in ((dict(sigma=2.0), 0.15), (dict(heatmap_type='combined'), 1e-3)):
        codec = UDPHeatmap((W, H), HM, **cfg)
        dec, scores = codec.decode(codec.encode(kp)['heatmaps'])
        assert dec.shape == (1, 17, 2) and scores.shape == (1, 17)
        expected = kp / codec.scale_factor / (np.array(HM) - 1) * (W, H)
        assert np.abs(dec - expected).max() < tol, cfg


def test_udp_all_zero_map_is_finite():
    codec = UDPHeatmap((W, H), HM, sigma=2.0)
    kp, scores = codec.decode(np.zeros((3, HM[1], HM[0]), dtype=np.float32))
    np.testing.assert_allclose(kp, np.broadcast_to(-np.array([W, H]) / (np.array(HM) - 1), (1, 3, 2)))
    assert (scores == 0).all()


@pytest.mark.parametrize('name, generate, arg', [
    ('gen_msra', generate_gaussian_heatmaps, (2.0, 1.5)),
    ('gen_udp', generate_udp_gaussian_heatmaps, 2.0),
    ('gen_unbiased', generate_unbiased_gaussian_heatmaps, 2.0),
    ('gen_offset', generate_offset_heatmap, 0.1)])
def test_target_generators_two_instances_match_mmpose(name, generate, arg):
    """Several instances merge by maximum (offset maps: last labelled instance wins)."""
    maps, weights = generate(HM, (REF['kp2'] / 4).astype(np.float32), REF['vis2'], arg)
    check_map_summary(name, maps)
    np.testing.assert_array_equal(weights, REF[f'{name}/weights'])


def test_float64_keypoints_match_mmpose():
    """float64 keypoints: MMPose (under NumPy 1.x) still computes Gaussians in float32."""
    kp64, vis = REF['kp64'], REF['vis1']
    assert kp64.dtype == np.float64
    for name, codec in (('f64_simcc', SimCCLabel((W, H), sigma=(4.9, 5.66))),
                        ('f64_msra_dark', MSRAHeatmap((W, H), HM, 2.0, unbiased=True)),
                        ('f64_udp', UDPHeatmap((W, H), HM, sigma=2.0))):
        enc = codec.encode(kp64, vis)
        np.testing.assert_array_equal(enc['keypoint_weights'], REF[f'{name}/weights'])
        for key, val in enc.items():
            if key != 'keypoint_weights':
                check_map_summary(f'{name}/{key}', val if key == 'heatmaps' else val[0][:, None, :])
    labels = RegressionLabel((W, H)).encode(kp64, vis)['keypoint_labels']
    np.testing.assert_array_equal(labels, REF['f64_reg/keypoint_labels'])


@pytest.mark.parametrize('name', list(HEATMAP_CFGS))
def test_heatmap_batch_decode_equals_per_sample(name):
    """(B, C, H, W) input (an extension over MMPose) gives the per-sample results, stacked."""
    cls, cfg = HEATMAP_CFGS[name]
    codec = cls((W, H), **cfg)
    clean = codec.encode(REF['kp1'], REF['vis1'])['heatmaps']
    batch = np.stack([clean, clean + (pseudo_noise(clean.shape, 5) * 0.02 - 0.01).astype(np.float32),
                      -np.abs(clean) - 0.01])  # an all-negative sample
    kp, scores = codec.decode(batch)
    assert kp.shape == (3, 17, 2) and scores.shape == (3, 17)
    for i, sample in enumerate(batch):
        one_kp, one_scores = codec.decode(sample)
        np.testing.assert_array_equal(kp[i], one_kp[0])
        np.testing.assert_array_equal(scores[i], one_scores[0])
