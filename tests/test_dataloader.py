"""Data loading: sampler order and sharding, per-sample seeding, collate layout, stage-2 switch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets import DefaultSampler, build_dataloader, pose_collate
from tests.conftest import combined_cfg, needs_data, needs_weights, rle_pipelines


def _loader(seed=7, num_workers=0, batch_size=8, stage2=False, **kw):
    pipes = rle_pipelines()
    ds = combined_cfg(pipes['train_pipeline'], pipes['val_pipeline'] if stage2 else None)
    cfg = dict(batch_size=batch_size, num_workers=num_workers, dataset=ds,
               sampler=dict(type='DefaultSampler', shuffle=True), **kw)
    return build_dataloader(cfg, seed=seed)


def _first_batches(loader, n=2):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def _same(a, b):
    return (torch.equal(a['inputs'], b['inputs'])
            and all(torch.equal(a['targets'][k], b['targets'][k]) for k in a['targets'])
            and torch.equal(a['meta']['id'], b['meta']['id']))


@needs_data
@needs_weights
def test_batch_layout_follows_contract():
    batch = _first_batches(_loader(), 1)[0]
    assert batch['inputs'].shape == (8, 3, 192, 192) and batch['inputs'].dtype == torch.uint8
    assert batch['targets']['keypoint_labels'].shape == (8, 17, 2)
    assert batch['targets']['keypoint_weights'].dtype == torch.float32
    meta = batch['meta']
    assert meta['img_id'].dtype == torch.int64 and meta['flip_indices'].shape == (8, 17)
    assert meta['flip_indices'].dtype == torch.int64 and meta['bbox'].shape == (8, 4)
    assert meta['bbox_score'].shape == (8,) and meta['input_size'].shape == (8, 2)
    assert isinstance(meta['img_path'], list) and len(meta['img_path']) == 8


@needs_data
@needs_weights
def test_same_seed_same_batches_new_epoch_new_batches():
    a, b = _loader(seed=7), _loader(seed=7)
    first_a, first_b = _first_batches(a), _first_batches(b)
    assert all(_same(x, y) for x, y in zip(first_a, first_b))
    a.set_epoch(1)
    assert not _same(_first_batches(a, 1)[0], first_a[0])
    assert not _same(_first_batches(_loader(seed=8), 1)[0], first_a[0])


@needs_data
@needs_weights
def test_workers_give_the_same_batches_as_the_main_process():
    single = _first_batches(_loader(seed=3), 2)
    multi = _first_batches(_loader(seed=3, num_workers=2), 2)
    assert all(_same(x, y) for x, y in zip(single, multi))


def test_distributed_sharding_and_round_up():
    data = list(range(10))
    shards = [list(DefaultSampler(data, shuffle=True, seed=1, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    flat = [i for s in shards for i, _ in s]
    assert set(flat) == set(range(10)) and len(flat) == 12  # padded by repetition
    seeds = [seed for s in shards for _, seed in s]
    assert len(set(seeds)) == 12
    exact = [list(DefaultSampler(data, shuffle=False, round_up=False, rank=r, world_size=3))
             for r in range(3)]
    assert [i for s in exact for i, _ in s] == [0, 3, 6, 9, 1, 4, 7, 2, 5, 8]
    s = DefaultSampler(data, shuffle=True, seed=1)
    e0 = [i for i, _ in s]
    s.set_epoch(1)
    assert [i for i, _ in s] != e0 and sorted(e0) == data


@needs_data
@needs_weights
def test_stage2_switch_reaches_persistent_workers():
    loader = _loader(num_workers=1, persistent_workers=True, stage2=True, batch_size=4)
    assert 'keypoint_labels' in _first_batches(loader, 1)[0]['targets']
    loader = loader.with_stage2()
    assert loader is not None and loader.with_stage2() is None  # switched once
    assert _first_batches(loader, 1)[0]['targets'] == {}  # stage 2 here: the val pipeline, no targets


def test_collate_rejects_mismatched_targets():
    a = {'inputs': torch.zeros(3, 2, 2, dtype=torch.uint8), 'targets': {'x': torch.zeros(2)},
         'meta': {'id': 1}}
    b = {**a, 'targets': {}}
    with pytest.raises(ValueError, match='different targets'):
        pose_collate([a, b])
    out = pose_collate([a, {**a, 'meta': {'id': np.int64(2)}}])
    assert out['meta']['id'].tolist() == [1, 2]
