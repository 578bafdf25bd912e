"""The device-side batched pipeline (datasets.batched) against the per-sample pipeline, on CPU.

For the same sample seeds both draw the same parameters, so the batches must agree: crops within the
documented bound (mean absolute difference per crop below ``CROP_MEAN_ABS_BOUND`` grey levels:
OpenCV's warpAffine quantises sampling positions to 1/32 px and bilinear weights to fixed point,
the batched warp does neither), keypoints within 1e-3 px, targets and meta equal.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from codec import build_codec
from datasets import build_dataset, pose_collate
from datasets.batched import (
    DeviceTopdownPipeline,
    RawSampleDataset,
    collate_raw,
    dataset_recipes,
    parse_recipe,
)
from datasets.batched.jpeg_decode import size_groups
from datasets.batched.raw_batch import host_fields
from datasets.batched.recipe import UnsupportedRecipeError
from datasets.batched.targets import encode_targets
from tests.conftest import (
    REPO,
    RLE_CODEC,
    assert_crops_close,
    coco_cfg,
    combined_cfg,
    geometric_pipeline,
    needs_coco,
    needs_data,
)
from utils.config import Config

# the COCO+AIC recipe's pipelines, built for another codec by overriding the recipe's codec variable
AIC_COCO_RECIPE = REPO / 'configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py'

SIMCC = dict(type='SimCCLabel', input_size=(192, 256), sigma=(4.9, 5.66), simcc_split_ratio=2.0)


def both_batches(dataset_cfg: dict, keys: list[tuple[int, int]]) -> tuple[dict, dict]:
    """(per-sample batch, batched-pipeline batch) of the same (index, seed) keys."""
    per_sample = build_dataset(dataset_cfg)
    recipes = dataset_recipes(dataset_cfg)
    raw_ds = RawSampleDataset(build_dataset(dataset_cfg), recipes)
    expected = pose_collate([per_sample[k] for k in keys])
    got = DeviceTopdownPipeline(recipes, 'cpu')(collate_raw([raw_ds[k] for k in keys]))
    return expected, got


def assert_meta_equal(expected: dict, got: dict) -> None:
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        if isinstance(value, list):
            assert got[key] == value, key
        else:
            assert got[key].dtype == value.dtype, key
            torch.testing.assert_close(got[key], value, rtol=0, atol=1e-3, msg=key)


@needs_data
@pytest.mark.parametrize('use_udp', [False, pytest.param(True, marks=pytest.mark.slow)])
def test_batched_equals_per_sample_on_coco_and_aic(use_udp):
    # COCO (x3) + AIC through KeypointConverter: images of different sizes share one canvas
    cfg = combined_cfg(geometric_pipeline(RLE_CODEC, use_udp))
    n = len(build_dataset(cfg))
    keys = [(i % n, 7000 + i) for i in range(2 * n)]
    expected, got = both_batches(cfg, keys)
    assert_crops_close(expected['inputs'], got['inputs'])
    # RegressionLabel: labels are the crop keypoints over the input size
    size = torch.tensor(RLE_CODEC['input_size'], dtype=torch.float64)
    kp_expected = expected['targets']['keypoint_labels'].double() * size
    kp_got = got['targets']['keypoint_labels'].double() * size
    assert (kp_expected - kp_got).abs().max() < 1e-3
    assert torch.equal(expected['targets']['keypoint_weights'], got['targets']['keypoint_weights'])
    assert_meta_equal(expected['meta'], got['meta'])


@needs_data
@pytest.mark.parametrize('codec', [RLE_CODEC, pytest.param(SIMCC, marks=pytest.mark.slow)])
def test_full_recipe_with_photometric_steps_equals_per_sample(codec):
    # the COCO+AIC recipes: box jitter, HSV, blur, median blur, coarse dropout (stage 1 and 2)
    recipe = Config.fromfile(AIC_COCO_RECIPE, {'codec': {'_delete_': True, **codec}}).to_dict()
    stage1, stage2 = recipe['train_pipeline'], recipe['train_pipeline_stage2']
    for pipeline in (stage1, stage2):
        cfg = combined_cfg(pipeline)
        keys = [(i % 39, 500 + i) for i in range(39)]
        expected, got = both_batches(cfg, keys)
        assert_crops_close(expected['inputs'], got['inputs'])
        for key, value in expected['targets'].items():
            torch.testing.assert_close(got['targets'][key], value, rtol=1e-5, atol=1e-6, msg=key)
        assert_meta_equal(expected['meta'], got['meta'])


@needs_coco
@pytest.mark.parametrize('flip', [dict(direction='vertical', prob=0.5),
                                  dict(direction=['horizontal', 'vertical', 'diagonal'],
                                       prob=[0.3, 0.3, 0.3])])
def test_every_flip_direction_folds_into_the_warp(flip):
    cfg = coco_cfg(pipeline=geometric_pipeline(SIMCC, flip=flip))
    keys = [(i % 12, 100 + i) for i in range(16)]
    expected, got = both_batches(cfg, keys)
    assert_crops_close(expected['inputs'], got['inputs'])
    assert expected['targets'].keys() == got['targets'].keys()
    for key, value in expected['targets'].items():
        torch.testing.assert_close(got['targets'][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert_meta_equal(expected['meta'], got['meta'])


@needs_data
def test_warps_are_grouped_by_image_size_within_the_budget():
    cfg = combined_cfg(geometric_pipeline(RLE_CODEC))  # COCO (about 640x430) and AIC (about 900x600) images
    recipes = dataset_recipes(cfg)
    raw_ds = RawSampleDataset(build_dataset(cfg), recipes)
    order = (0, 36, 1, 37, 2, 0, 36)
    raw = collate_raw([raw_ds[(i, 40 + k)] for k, i in enumerate(order)])
    sizes = [tuple(hw) for hw in host_fields(raw, ['img_hw'])['img_hw'].tolist()]
    images = [torch.empty(3, h, w, dtype=torch.uint8) for h, w in sizes]
    groups = size_groups(images, budget=2 ** 28)
    assert sorted(i for g in groups for i in g) == list(range(len(order)))
    assert all(len({sizes[i] for i in g}) == 1 for g in groups) and len(groups) == len(set(sizes))
    whole = DeviceTopdownPipeline(recipes, 'cpu')(raw)
    split = size_groups(images, budget=1)  # one image per warp
    assert len(split) == len(order)
    raw = collate_raw([raw_ds[(i, 40 + k)] for k, i in enumerate(order)])
    pieces = DeviceTopdownPipeline(recipes, 'cpu', warp_budget=1)(raw)
    assert torch.equal(pieces['inputs'], whole['inputs'])  # each image is sampled in its own coordinates


def _random_keypoints(rng: np.random.Generator, n: int,
                      size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    w, h = size
    kpts = rng.uniform(-0.3, 1.3, (n, 17, 2)) * [w, h]
    kpts[:, :3] = np.round(kpts[:, :3] * 2) / 2  # on SimCC's rounding boundaries and pixel edges
    kpts[:, 3] = [w - 1, h - 1]
    visible = rng.choice([0.0, 0.3, 0.5, 1.0], (n, 17))
    return kpts.astype(np.float32), visible.astype(np.float32)


@pytest.mark.parametrize('codec_cfg', [
    RLE_CODEC, SIMCC, dict(SIMCC, smoothing_type='standard', label_smooth_weight=0.1, sigma=6.0),
    dict(SIMCC, normalize=False, simcc_split_ratio=1.5),
    dict(type='MSRAHeatmap', input_size=(192, 256), heatmap_size=(48, 64), sigma=2),
    dict(type='MSRAHeatmap', input_size=(192, 256), heatmap_size=(48, 64), sigma=1.5),
    dict(type='MSRAHeatmap', input_size=(192, 256), heatmap_size=(48, 64), sigma=2, unbiased=True),
    dict(type='UDPHeatmap', input_size=(192, 192), heatmap_size=(48, 48), sigma=2)])
def test_device_targets_equal_the_codec(codec_cfg):
    codec = build_codec(codec_cfg)
    kpts, visible = _random_keypoints(np.random.default_rng(0), 16, codec_cfg['input_size'])
    joint_w = np.random.default_rng(1).uniform(0.5, 2, (16, 17)).astype(np.float32)
    got = encode_targets(codec, torch.from_numpy(kpts), torch.from_numpy(visible), torch.from_numpy(joint_w))
    for i in range(len(kpts)):
        ref = codec.encode(kpts[i:i + 1], visible[i:i + 1])
        ref['keypoint_weights'] = ref['keypoint_weights'] * joint_w[i]
        assert set(ref) == set(got)
        for key, value in ref.items():
            value = value if key == 'heatmaps' else value[0]  # heatmaps (K, H, W) have no instance dim
            torch.testing.assert_close(got[key][i], torch.from_numpy(np.asarray(value, np.float32)),
                                       rtol=1e-6, atol=2e-7, msg=key)


def test_meta_device_pipeline_runs_shape_only():
    # device-agnostic: the geometry, warp and targets trace on the meta device (no data, shapes only)
    from datasets.batched.affine_crop import sampling_grids, warp_group
    from datasets.batched.geometry import crop_geometry

    b, k = 4, 17
    raw = {'bbox': torch.zeros(b, 4), 'keypoints': torch.zeros(b, k, 2),
           'keypoints_visible': torch.zeros(b, k), 'flip_indices': torch.zeros(b, k, dtype=torch.int64),
           'img_hw': torch.zeros(b, 2, dtype=torch.int64),
           'flip': torch.zeros(b, dtype=torch.int64), 'half_body': torch.zeros(b, k, dtype=torch.bool),
           'shift': torch.zeros(b, 2), 'scale': torch.zeros(b), 'rotation': torch.zeros(b)}
    raw = {key: v.to('meta') for key, v in raw.items()}
    geo = crop_geometry(raw, 1.25, 1.5, (192, 256), use_udp=False)
    grids = sampling_grids(geo.image_to_crop, raw['img_hw'], (192, 256))
    crops = warp_group(torch.zeros(b, 3, 480, 640, device='meta'), grids.unbind(0))
    targets = encode_targets(build_codec(SIMCC), geo.crop_keypoints, geo.visible)
    assert crops.shape == (b, 3, 256, 192) and crops.device.type == 'meta'
    assert targets['keypoint_x_labels'].shape == (b, k, 384) and geo.image_to_crop.shape == (b, 3, 3)


@needs_data
def test_unsupported_steps_are_named():
    pipeline = geometric_pipeline(RLE_CODEC)
    with pytest.raises(UnsupportedRecipeError, match=r'pipeline\[3\] RandomFlip: out of the order'):
        parse_recipe([pipeline[0], pipeline[1], pipeline[3], pipeline[2], *pipeline[4:]])
    with pytest.raises(UnsupportedRecipeError, match='codec IntegralRegressionLabel'):
        parse_recipe(geometric_pipeline(dict(type='IntegralRegressionLabel', input_size=(192, 256),
                                             heatmap_size=(48, 64), sigma=2)))
    with pytest.raises(UnsupportedRecipeError, match="heatmap_type 'combined'"):
        parse_recipe(geometric_pipeline(dict(type='UDPHeatmap', input_size=(192, 256), heatmap_size=(48, 64),
                                             heatmap_type='combined')))
    with pytest.raises(UnsupportedRecipeError, match=r'pipeline\[1\] RandomResize'):
        parse_recipe([pipeline[0], dict(type='RandomResize'), *pipeline[1:]])
    with pytest.raises(UnsupportedRecipeError, match=r'pipeline\[5\] YOLOXHSVRandomAug: .* after Topdown'):
        parse_recipe([*pipeline[:5], dict(type='YOLOXHSVRandomAug'), *pipeline[6:]])
    with pytest.raises(UnsupportedRecipeError, match=r"pipeline\[6\] Albumentation: transform 'Emboss'"):
        emboss = dict(type='Albumentation', transforms=[dict(type='Emboss')])
        parse_recipe([*pipeline[:6], emboss, *pipeline[6:]])
    with pytest.raises(UnsupportedRecipeError, match='needs TopdownAffine'):
        parse_recipe([p for p in pipeline if p['type'] != 'TopdownAffine'])
    wrapped = combined_cfg(pipeline)
    wrapped['datasets'][1]['pipeline'].append(dict(type='RandomFlip'))
    with pytest.raises(UnsupportedRecipeError, match=r'datasets\[1\].pipeline\[1\] RandomFlip'):
        dataset_recipes(wrapped)


def _write_png_copy(tmp_path, cfg: dict) -> dict:
    """The COCO sample with every image re-encoded as PNG (the OpenCV fallback path)."""
    import json

    ann = json.loads(Path(cfg['data_root'], cfg['ann_file']).read_text())
    for img in ann['images']:
        src = Path(cfg['data_root'], cfg['data_prefix']['img'], img['file_name'])
        img['file_name'] = src.stem + '.png'
        cv2.imwrite(str(tmp_path / img['file_name']), cv2.imread(str(src)))
    (tmp_path / 'ann.json').write_text(json.dumps(ann))
    return dict(cfg, data_root=None, ann_file=str(tmp_path / 'ann.json'), data_prefix=dict(img=str(tmp_path)))


@needs_coco
def test_other_formats_take_the_opencv_fallback(tmp_path):
    cfg = _write_png_copy(tmp_path, coco_cfg(pipeline=geometric_pipeline(RLE_CODEC)))
    keys = [(i, 50 + i) for i in range(12)]
    raw_ds = RawSampleDataset(build_dataset(cfg), dataset_recipes(cfg))
    raw = collate_raw([raw_ds[k] for k in keys])
    assert all(j is None for j in raw['jpeg']) and all(img is not None for img in raw['pixels'])
    expected, got = both_batches(cfg, keys)
    assert_crops_close(expected['inputs'], got['inputs'])
    assert_meta_equal(expected['meta'], got['meta'])
