"""Bad image files in the batched pipeline behave as in the per-sample one: an error naming the file
(missing, not an image, truncated, undecodable), or (``skip_bad_images=True``) a logged replacement;
a damaged scan that OpenCV still decodes gives the same crops."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from datasets import build_dataset, pose_collate
from datasets.batched import DeviceTopdownPipeline, RawSampleDataset, collate_raw, dataset_recipes
from datasets.batched.raw_batch import host_fields
from datasets.image_io import jpeg_segments
from datasets.transforms import ImageLoadError
from tests.conftest import COCO, DAMAGED_NAME, assert_crops_close, copy_sample, needs_coco


def _original() -> bytes:
    return (COCO / DAMAGED_NAME).read_bytes()


def _bad_index(cfg: dict) -> int:
    ds = build_dataset(cfg)
    return next(i for i in range(len(ds)) if ds.get_data_info(i)['img_path'].endswith(DAMAGED_NAME))



@needs_coco
@pytest.mark.parametrize('damage', ['missing', 'not_a_jpeg', 'header_only', 'truncated'])
def test_unreadable_file_names_itself_or_is_skipped(tmp_path, damage, project_log):
    caplog = project_log
    data = {'missing': b'', 'not_a_jpeg': b'<html>not an image</html>', 'header_only': _original()[:200],
            'truncated': _original()[:len(_original()) // 2]}[damage]
    cfg = copy_sample(tmp_path, {DAMAGED_NAME: data})
    idx = _bad_index(cfg)
    with pytest.raises(ImageLoadError, match=DAMAGED_NAME):
        build_dataset(cfg)[(idx, 1)]
    with pytest.raises(ImageLoadError, match=DAMAGED_NAME):
        RawSampleDataset(build_dataset(cfg), dataset_recipes(cfg))[(idx, 1)]
    skipping = RawSampleDataset(build_dataset({**cfg, 'skip_bad_images': True}), dataset_recipes(cfg))
    with caplog.at_level(logging.WARNING):
        sample = skipping[(idx, 1)]
    assert DAMAGED_NAME not in sample['img_path']
    assert DAMAGED_NAME in caplog.text and 'skip_bad_images' in caplog.text


@needs_coco
def test_corrupt_scan_decodes_like_opencv(tmp_path):
    # header and end marker intact: torchvision refuses the scan, OpenCV decodes what it can
    data = bytearray(_original())
    data[len(data) // 2:len(data) // 2 + 2000] = np.random.default_rng(0).integers(0, 256, 2000).tobytes()
    cfg = copy_sample(tmp_path, {DAMAGED_NAME: bytes(data)})
    idx = _bad_index(cfg)
    keys = [(idx, 11), (idx, 12), (0, 13)]
    expected = pose_collate([build_dataset(cfg)[k] for k in keys])
    recipes = dataset_recipes(cfg)
    raw_ds = RawSampleDataset(build_dataset(cfg), recipes)
    raw = collate_raw([raw_ds[k] for k in keys])
    assert raw['jpeg'][0] is not None  # passes the loader's checks; decoded on the device side
    got = DeviceTopdownPipeline(recipes, 'cpu')(raw)
    assert_crops_close(expected['inputs'], got['inputs'])


@needs_coco
def test_undecodable_scan_names_the_file_or_is_replaced_in_the_batch(tmp_path, project_log):
    caplog = project_log
    # complete and well-formed as far as the loader's checks go, but its frame header is invalid
    # (a component with zero sampling factors): only decoding finds out, on the device side
    data = bytearray(_original())
    sof = next(pos for marker, pos, _ in jpeg_segments(bytes(data)) if marker == 0xC0)
    data[sof + 11] = 0x00
    cfg = copy_sample(tmp_path, {DAMAGED_NAME: bytes(data)})
    idx = _bad_index(cfg)
    with pytest.raises(ImageLoadError, match=DAMAGED_NAME):
        build_dataset(cfg)[(idx, 1)]
    recipes = dataset_recipes(cfg)
    raw_ds = RawSampleDataset(build_dataset(cfg), recipes)
    raw = collate_raw([raw_ds[k] for k in [(0, 1), (idx, 2), (1, 3)]])  # passes the loader's header checks
    with pytest.raises(ImageLoadError, match=DAMAGED_NAME):
        DeviceTopdownPipeline(recipes, 'cpu')(raw)
    with caplog.at_level(logging.WARNING):
        batch = DeviceTopdownPipeline(recipes, 'cpu', skip_bad_images=True)(raw)
    assert DAMAGED_NAME in caplog.text and 'skip_bad_images' in caplog.text
    assert batch['inputs'].shape == (3, 3, 192, 192)
    assert DAMAGED_NAME not in ''.join(batch['meta']['img_path'])
    ids = torch.from_numpy(host_fields(collate_raw([raw_ds[k] for k in [(0, 1), (1, 3)]]), ['id'])['id'])
    assert torch.equal(batch['meta']['id'], ids[[0, 1, 1]])  # the bad one became another sample
