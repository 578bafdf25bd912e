"""Choosing the input pipeline and the device-batch loader (order, errors, epochs, early stop)."""
from __future__ import annotations

import logging
import threading

import pytest
import torch

from datasets.batched import DeviceBatchLoader, build_train_loader, choose_input_pipeline
from datasets.transforms import ImageLoadError
from tests.conftest import (
    DAMAGED_NAME,
    REPO,
    RLE_CODEC,
    coco_cfg,
    copy_sample,
    geometric_pipeline,
    needs_coco,
)
from utils.config import load_config

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


def _run(fn, timeout: float = 120.0):
    """``fn()`` in a thread; fails (instead of hanging the suite) if it does not return in ``timeout``."""
    result: dict = {}

    def target():
        try:
            result['value'] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            result['error'] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f'no result after {timeout} s: the loader hangs'
    if 'error' in result:
        raise result['error']
    return result['value']


def _batches_equal(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x['inputs'], y['inputs']) and torch.equal(x['meta']['id'], y['meta']['id'])
        and all(torch.equal(x['targets'][k], y['targets'][k]) for k in x['targets']) for x, y in zip(a, b))


def _device_loader(num_workers: int = 0) -> DeviceBatchLoader:
    dataset = coco_cfg(pipeline=geometric_pipeline(RLE_CODEC))
    recipes = choose_input_pipeline('device', torch.device('cpu'), dataset, LOGGER)
    loader = build_train_loader(loader_cfg(dataset, num_workers=num_workers), recipes, torch.device('cpu'),
                                seed=5)
    loader.set_epoch(2)
    return loader



def _replace_pipeline(loader: DeviceBatchLoader, call) -> None:
    """Run ``call(raw)`` in the loader instead of its pipeline (on the pipeline's device)."""
    device = loader.pipeline.device
    loader.pipeline = type('Replaced', (), {'__call__': staticmethod(call), 'device': device})()


def _fallback_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if 'per-sample CPU pipeline' in r.getMessage()]


@needs_coco
def test_stream_creation_error_reaches_the_consumer_in_the_producers_device(project_log, monkeypatch):
    # the producer sets its thread's CUDA device, then fails to create its stream: the consumer hears
    # of it (it used to wait forever) and the epoch goes on with the per-sample pipeline
    loader = _device_loader()
    expected = list(loader.per_sample_loader())
    calls = []
    monkeypatch.setattr(torch.cuda, 'set_device',
                        lambda device: calls.append((threading.current_thread().name, torch.device(device))))

    def no_stream(*args, **kwargs):
        raise RuntimeError('injected: cannot create a CUDA stream')
    monkeypatch.setattr(torch.cuda, 'Stream', no_stream)
    loader.pipeline.device = torch.device('cuda', 1)
    got = _run(lambda: list(loader))
    assert calls == [('device-batch-loader', torch.device('cuda', 1))]
    assert _batches_equal(got, expected) and loader.fallen_back
    [message] = _fallback_warnings(project_log)
    assert 'batch 1 failed: RuntimeError: injected: cannot create a CUDA stream' in message


@needs_coco
@pytest.mark.parametrize('num_workers', [0, 2])
def test_first_batch_that_differs_falls_back_with_the_measured_difference(project_log, num_workers):
    loader = _device_loader(num_workers)
    expected = list(loader.per_sample_loader())
    make = loader.pipeline.__call__

    def brighter(raw):  # a device that computes every crop 3 grey levels too bright
        batch = make(raw)
        return {**batch, 'inputs': batch['inputs'].clamp(max=250) + 3}
    _replace_pipeline(loader, brighter)
    got = _run(lambda: list(loader))
    assert _batches_equal(got, expected)
    [message] = _fallback_warnings(project_log)
    assert 'first batch differs' in message and 'mean absolute difference 3.00 grey levels' in message
    assert _batches_equal(_run(lambda: list(loader)), expected)  # the next epoch: per sample, no new warning
    assert len(_fallback_warnings(project_log)) == 1


@needs_coco
def test_device_failure_mid_epoch_continues_per_sample_and_training_goes_on(project_log):
    from engine import LossModel, prepare_batch, train_step
    from models import build_pose_estimator
    from optim import build_optimizer

    loader = _device_loader()
    expected = list(loader.per_sample_loader())
    make, calls = loader.pipeline.__call__, []

    def failing_second(raw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError('injected: device-side failure')
        return make(raw)
    _replace_pipeline(loader, failing_second)
    cfg = load_config(REPO / 'configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py')
    model = build_pose_estimator(cfg.model)
    train_model = LossModel(model).train()
    optim = build_optimizer(model, dict(optimizer=dict(type='AdamW', lr=1e-4)))
    got = []
    for it, batch in enumerate(_run(lambda: list(loader))):
        got.append(batch)
        losses = train_step(train_model, optim, prepare_batch(batch, torch.device('cpu')), it)
        assert torch.isfinite(losses['loss_kpt'])
    assert len(got) == len(loader) == 3 and _batches_equal(got[1:], expected[1:])  # batch 1: the device's
    [message] = _fallback_warnings(project_log)
    assert 'batch 2 failed: RuntimeError: injected: device-side failure' in message
    stage2 = loader.with_stage2()
    assert stage2 is None  # this dataset has no stage 2; with one, the new loader keeps the fallback
