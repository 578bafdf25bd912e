"""Choosing the input pipeline and the device-batch loader (order, errors, epochs, early stop)."""
from __future__ import annotations

import logging

import pytest
import torch

from datasets.batched import DeviceBatchLoader, build_train_loader, choose_input_pipeline
from datasets.transforms import ImageLoadError
from tests.conftest import DAMAGED_NAME, RLE_CODEC, coco_cfg, copy_sample, geometric_pipeline, needs_coco

LOGGER = logging.getLogger('test_batched_loader')


def loader_cfg(dataset: dict, batch_size: int = 4, num_workers: int = 0) -> dict:
    return dict(batch_size=batch_size, num_workers=num_workers,
                sampler=dict(type='DefaultSampler', shuffle=True), dataset=dataset)


@needs_coco
def test_choice_of_pipeline(caplog):
    supported = coco_cfg(pipeline=geometric_pipeline(RLE_CODEC))
    cpu, cuda = torch.device('cpu'), torch.device('cuda')
    assert choose_input_pipeline('cpu', cuda, supported, LOGGER) is None
    assert choose_input_pipeline(None, cpu, supported, LOGGER) is None  # auto: device only on CUDA
    assert len(choose_input_pipeline('auto', cuda, supported, LOGGER)) == 1
    assert len(choose_input_pipeline('device', cpu, supported, LOGGER)) == 1
    unsupported = coco_cfg(pipeline=[*geometric_pipeline(RLE_CODEC)[:6], dict(type='RandomResize'),
                                     *geometric_pipeline(RLE_CODEC)[6:]])
    with caplog.at_level(logging.WARNING, logger='test_batched_loader'):
        assert choose_input_pipeline('device', cpu, unsupported, LOGGER) is None
    assert 'train_dataloader.dataset.pipeline[6] RandomResize' in caplog.text
    assert 'per-sample CPU pipeline' in caplog.text
    with pytest.raises(ValueError, match="got 'gpu'"):
        choose_input_pipeline('gpu', cpu, supported, LOGGER)


@needs_coco
@pytest.mark.parametrize('num_workers', [0, 2])
def test_device_loader_yields_the_pipeline_batches_in_order(num_workers):
    dataset = coco_cfg(pipeline=geometric_pipeline(RLE_CODEC))
    cfg = loader_cfg(dataset, num_workers=num_workers)
    recipes = choose_input_pipeline('device', torch.device('cpu'), dataset, LOGGER)
    device_loader = build_train_loader(cfg, recipes, torch.device('cpu'), seed=3)
    assert isinstance(device_loader, DeviceBatchLoader) and len(device_loader) == 3
    device_loader.set_epoch(1)
    got = list(device_loader)
    raw_loader = device_loader.loader
    expected = [device_loader.pipeline(raw) for raw in raw_loader]  # same epoch: same order and draws
    assert len(got) == 3
    for a, b in zip(got, expected):
        assert torch.equal(a['inputs'], b['inputs']) and torch.equal(a['meta']['id'], b['meta']['id'])
        assert all(torch.equal(a['targets'][k], b['targets'][k]) for k in a['targets'])
    first = next(iter(device_loader))  # stopping early does not hang, the next epoch starts afresh
    assert torch.equal(first['inputs'], got[0]['inputs'])


@needs_coco
def test_device_loader_raises_the_loading_error(tmp_path):
    dataset = copy_sample(tmp_path, {DAMAGED_NAME: b'not an image'})
    loader = build_train_loader(loader_cfg(dataset, batch_size=12), choose_input_pipeline(
        'device', torch.device('cpu'), dataset, LOGGER), torch.device('cpu'), seed=0)
    with pytest.raises(ImageLoadError, match=DAMAGED_NAME):
        list(loader)
