"""The raw batch travels as one flat uint8 tensor (one shared-memory handle per batch from a loader
worker) whose fields read back exactly what the raw samples held."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils._pytree import tree_leaves

from datasets import build_dataloader, build_dataset
from datasets.batched import RawSampleDataset, collate_raw, dataset_recipes
from datasets.batched.raw_batch import field_views, host_fields, pack, photometric_field
from tests.conftest import coco_cfg, needs_coco

PIPELINE = [dict(type='LoadImage'), dict(type='GetBBoxCenterScale'), dict(type='RandomFlip'),
            dict(type='RandomBBoxTransform'), dict(type='TopdownAffine', input_size=(192, 192)),
            dict(type='Albumentation', transforms=[dict(type='Blur', p=0.5)]),
            dict(type='GenerateTarget', encoder=dict(type='RegressionLabel', input_size=(192, 192))),
            dict(type='PackPoseInputs')]


def test_pack_aligns_fields_and_uploads_only_the_first_blobs():
    arrays = {'a': np.arange(3, dtype=np.int16), 'b': np.ones((2, 2), np.float64), 'c': np.array([True])}
    blobs = [np.full(5, 7, np.uint8), np.full(3, 9, np.uint8)]
    buffer, fields, starts, upload, lease = pack(arrays, blobs, 1)
    assert [offset for offset, _, _ in fields.values()] == [0, 8, 40] and starts == [48, 53]
    assert upload == 53 and buffer.numel() == 56 and lease is None
    views = field_views(buffer, fields)
    for name, array in arrays.items():
        np.testing.assert_array_equal(views[name].numpy(), array)
    assert buffer[48:53].tolist() == [7] * 5 and buffer[53:].tolist() == [9] * 3


@needs_coco
def test_a_worker_sends_one_tensor_per_batch_that_reads_back_the_samples():
    cfg = coco_cfg(pipeline=PIPELINE)
    raw_ds = RawSampleDataset(build_dataset(cfg), dataset_recipes(cfg))
    loader_cfg = dict(batch_size=6, num_workers=2, sampler=dict(type='DefaultSampler', shuffle=False))
    loader = build_dataloader(loader_cfg, seed=1, dataset=raw_ds, collate_fn=collate_raw)
    raw = next(iter(loader))
    [buffer] = [leaf for leaf in tree_leaves(raw) if isinstance(leaf, torch.Tensor)]  # no other tensor
    assert buffer is raw['buffer'] and buffer.dtype == torch.uint8 and buffer.is_shared()
    samples = [raw_ds[tuple(int(v) for v in key)] for key in raw['key']]
    fields = host_fields(raw, raw['sample_fields'])
    for name in ('bbox', 'keypoints', 'flip', 'scale', 'rotation', 'img_id', 'flip_indices', 'half_body'):
        np.testing.assert_array_equal(fields[name], np.stack([np.asarray(s[name]) for s in samples]))
    for i, sample in enumerate(samples):
        start, length = raw['jpeg'][i]
        assert bytes(buffer[start:start + length].numpy()) == Path(sample['jpeg'].path).read_bytes()
        assert raw['pixels'][i] is None and raw['img_path'][i] == sample['img_path']
    chosen = [i for i, s in enumerate(samples) if s['photometric'][0]['ksize'] > 1]
    groups = raw['photometric'][0]
    assert sum(len(host_fields(raw, [photometric_field(0, k, 'ksize')])[photometric_field(0, k, 'ksize')])
               for k in range(len(groups))) == len(chosen)  # only the samples whose coin chose Blur
