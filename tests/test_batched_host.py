"""The loader side's host work, made cheaper without changing what it delivers: pooled shared-memory
buffers that a worker refills only once the consumer has handed a batch back, JPEG bytes read from
the file straight into the batch buffer (header and tail checked per sample), and a batch of samples
fetched at once (``__getitems__``) giving exactly the samples one by one."""
from __future__ import annotations

import functools
import logging
import os
import pickle
import subprocess
import sys
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import datasets.batched.buffer_pool as buffer_pool
import datasets.batched.device_loader as device_loader
import datasets.batched.raw_batch as raw_batch
import datasets.image_io as image_io
from datasets import RepeatDataset, build_dataloader, build_dataset
from datasets.batched import (
    DeviceTopdownPipeline,
    RawSampleDataset,
    build_train_loader,
    choose_input_pipeline,
    collate_raw,
    dataset_recipes,
)
from datasets.batched.buffer_pool import FREE, IN_USE, BufferPool, release
from datasets.batched.host_sample import JpegFile, read_image_source
from datasets.batched.raw_batch import _PooledBatch, host_fields
from datasets.image_io import ImageFile, incomplete_reason, read_file_bytes, read_into
from datasets.jpeg_header import jpeg_frame
from datasets.transforms import ImageLoadError
from tests.conftest import RLE_CODEC, coco_cfg, geometric_pipeline, needs_coco


def _flag(view: torch.Tensor) -> int:
    return int(torch.empty(0, dtype=torch.uint8).set_(view.untyped_storage(), 0, (1,), (1,))[0])


def test_pool_lends_a_buffer_again_only_once_released():
    pool = BufferPool(slots=2)
    a, lease_a = pool.take(1000)
    b, lease_b = pool.take(500)
    assert a.numel() == 1000 and a.is_shared() and _flag(a) == _flag(b) == IN_USE
    assert a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr()
    c, lease_c = pool.take(10)  # both slots out: a fresh buffer, not kept
    assert lease_c is None and c.is_shared()
    lease_a.release()
    lease_a.release()  # twice: nothing more
    assert _flag(a) == FREE
    d, lease_d = pool.take(800)
    assert d.untyped_storage().data_ptr() == a.untyped_storage().data_ptr() and _flag(d) == IN_USE
    lease_d.release()
    e, _ = pool.take(1 << 20)  # the free buffer is too small: replaced by a larger one
    assert e.numel() == 1 << 20 and e.untyped_storage().data_ptr() != a.untyped_storage().data_ptr()
    assert len(pool._slots) == 2
    assert pickle.loads(pickle.dumps(pool))._slots == []  # a spawned worker starts empty
    pool._pid = -1  # as in a forked worker: the parent's buffers are not lent
    f, _ = pool.take(10)
    assert len(pool._slots) == 1 and f.untyped_storage().data_ptr() not in (
        a.untyped_storage().data_ptr(), b.untyped_storage().data_ptr())
    release({'lease': None})  # a batch made without a pool


@needs_coco
def test_workers_refill_a_buffer_only_after_its_batch_is_released(monkeypatch):
    cfg = coco_cfg(pipeline=geometric_pipeline(RLE_CODEC))
    raw_ds = RawSampleDataset(RepeatDataset(build_dataset(cfg), times=3), dataset_recipes(cfg))
    handles = []
    monkeypatch.setattr(raw_batch, 'receive', lambda h: handles.append(h) or buffer_pool.receive(h))
    for hand_back in (True, False):
        # a worker's batches out at once: one held by the consumer, one sent, one being collated
        collate = functools.partial(collate_raw, pool=BufferPool(3))
        loader = build_dataloader(dict(batch_size=3, num_workers=2, sampler=dict(type='DefaultSampler')),
                                  seed=1, dataset=raw_ds, collate_fn=collate)
        held = []
        for raw in loader:  # 12 batches, 6 per worker
            if hand_back:
                _assert_reads_back(raw, raw_ds)
                release(raw)
            held.append(raw)
        leases = [raw['lease'] is not None for raw in held]
        # handed back, every batch is lent from a pool of 3 per worker; held, the pools run dry
        assert all(leases) if hand_back else leases.count(True) == 6
        if not hand_back:
            for raw in held:  # nothing was overwritten while the batches were held
                _assert_reads_back(raw, raw_ds)
        # each pooled buffer came with its first batch; refilled, it is named by its token; the receiver
        # keeps at most the 3 buffers of each worker (a buffer replaced by a larger one is dropped)
        sent = [token for token, whole, _, _, _ in handles if whole is not None]
        named = [token for token, whole, _, _, _ in handles if whole is None]
        assert len(handles) == leases.count(True) and set(named) <= set(sent)
        assert len(named) > 0 if hand_back else len(named) == 0
        assert len([t for t in buffer_pool._received if t in sent]) <= 6
        handles.clear()


def _assert_reads_back(raw: dict, raw_ds: RawSampleDataset) -> None:
    samples = [raw_ds[tuple(int(v) for v in key)] for key in raw['key']]
    fields = host_fields(raw, ['bbox', 'rotation', 'img_id'])
    for name in fields:
        np.testing.assert_array_equal(fields[name], np.stack([np.asarray(s[name]) for s in samples]))
    for (start, length), sample in zip(raw['jpeg'], samples):
        assert bytes(raw['buffer'][start:start + length].numpy()) == Path(sample['jpeg'].path).read_bytes()


def test_a_pooled_buffer_is_sent_once_then_named_by_its_token(monkeypatch):
    monkeypatch.setattr(buffer_pool, '_received', {})  # this process receives its own batches here
    pool = BufferPool(slots=1)
    view, lease = pool.take(100)
    view.copy_(torch.arange(100, dtype=torch.uint8))
    batch = _PooledBatch({'buffer': view, 'n': 3, 'lease': lease})
    first = ForkingPickler.dumps(batch)
    got = pickle.loads(first)
    assert type(got) is dict and list(got) == ['buffer', 'n', 'lease'] and got['n'] == 3
    assert torch.equal(got['buffer'], view)
    got['lease'].release()
    assert _flag(view) == FREE  # the lease received releases the worker's buffer
    view, lease = pool.take(50)
    view.fill_(9)
    again = ForkingPickler.dumps(_PooledBatch({'buffer': view, 'lease': lease}))
    assert len(again) < len(first) // 2  # a token, not the buffer: no file descriptor passed
    assert torch.equal(pickle.loads(again)['buffer'], torch.full((50,), 9, dtype=torch.uint8))
    token = pool._slots[0].token
    lease.release()
    view, lease = pool.take(1 << 20)  # a larger buffer replaces the first: the receiver drops it
    pickle.loads(ForkingPickler.dumps(_PooledBatch({'buffer': view, 'lease': lease})))
    assert token not in buffer_pool._received and pool._slots[0].token in buffer_pool._received
    del buffer_pool._received[pool._slots[0].token]  # a batch of a buffer never received: named
    lease.release()
    view, lease = pool.take(10)
    with pytest.raises(RuntimeError, match=f'names shared buffer .* of loader worker {os.getpid()}, which'):
        pickle.loads(ForkingPickler.dumps(_PooledBatch({'buffer': view, 'lease': lease})))
    # not the lent buffer (a batch whose buffer was replaced): the buffer itself is sent
    plain = pickle.loads(ForkingPickler.dumps(_PooledBatch({'buffer': torch.ones(4, dtype=torch.uint8),
                                                            'lease': lease})))
    assert type(plain) is dict and torch.equal(plain['buffer'], torch.ones(4, dtype=torch.uint8))


def test_the_buffers_of_exited_workers_are_dropped_and_not_forked(monkeypatch):
    gone = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True,
                          text=True, check=True)
    dead = (int(gone.stdout), 1)
    monkeypatch.setattr(buffer_pool, '_received', {dead: torch.zeros(1, dtype=torch.uint8)})
    pool = BufferPool(slots=1)
    view, lease = pool.take(10)
    pickle.loads(ForkingPickler.dumps(_PooledBatch({'buffer': view, 'lease': lease})))  # a new buffer arrives
    assert dead not in buffer_pool._received and pool._slots[0].token in buffer_pool._received
    child = os.fork()  # a forked worker maps none of the buffers its parent received
    if child == 0:
        os._exit(len(buffer_pool._received))
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0


@needs_coco
def test_a_batch_fetched_at_once_is_the_samples_one_by_one():
    cfg = coco_cfg(pipeline=[*geometric_pipeline(RLE_CODEC)[:6], dict(type='YOLOXHSVRandomAug'),
                             *geometric_pipeline(RLE_CODEC)[6:]])
    raw_ds = RawSampleDataset(build_dataset(cfg), dataset_recipes(cfg))
    keys = [(i % len(raw_ds), 1000 + i) for i in range(6)]
    for batched, single in zip(raw_ds.__getitems__(keys), [raw_ds[k] for k in keys]):
        assert batched.keys() == single.keys()
        for name, value in batched.items():
            if name == 'photometric':
                assert all(np.array_equal(a['gains'], b['gains']) for a, b in zip(value, single[name]))
            else:
                assert np.array_equal(np.asarray(value), np.asarray(single[name])), name
    assert raw_ds.__getitems__([3])[0]['key'] == (3, -1)


@needs_coco
def test_the_batch_keeps_nothing_of_the_raw_buffer_on_the_cpu():
    # the worker may refill the buffer once the pipeline ran: no output may read it afterwards
    cfg = coco_cfg(pipeline=geometric_pipeline(RLE_CODEC))
    recipes = dataset_recipes(cfg)
    raw_ds = RawSampleDataset(build_dataset(cfg), recipes)
    raw = collate_raw(raw_ds.__getitems__([(i, i) for i in range(4)]))
    batch = DeviceTopdownPipeline(recipes, 'cpu')(raw)
    before = {k: v.clone() for k, v in batch['meta'].items() if isinstance(v, torch.Tensor)}
    raw['buffer'].fill_(7)
    assert all(torch.equal(batch['meta'][k], v) for k, v in before.items())


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _jpeg(size=(40, 60)) -> bytes:
    img = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    return cv2.imencode('.jpg', img)[1].tobytes()


def test_jpeg_read_into_the_batch_and_checked_from_its_header_and_tail(tmp_path):
    plain = _jpeg()
    frame = jpeg_frame(plain)
    assert frame.scan is not None and incomplete_reason(np.frombuffer(plain, np.uint8)) is None
    assert incomplete_reason(np.frombuffer(plain[:frame.scan + 10], np.uint8), frame.scan) is not None
    # a 40 kB comment before the frame header (past the first read), 6 kB after the end marker (past the
    # tail searched first): found and accepted as the whole-file check does
    comment = b'\xff\xfe' + (40_002).to_bytes(2, 'big') + bytes(40_000)
    padded = plain[:2] + comment + plain[2:] + bytes(6000)
    jpeg, image, hw = read_image_source(_write(tmp_path / 'long.jpg', padded))
    assert isinstance(jpeg, JpegFile) and image is None and hw == (40, 60) and jpeg.size == len(padded)
    out = np.empty(jpeg.size, np.uint8)
    jpeg.read_into(out)
    assert out.tobytes() == padded
    with pytest.raises(ImageLoadError, match='cut.jpg is a truncated JPEG'):
        read_image_source(_write(tmp_path / 'cut.jpg', padded[:len(padded) - 7000]))
    # the file changes between its header check and the batch's read: named, not silently mixed
    jpeg, _, _ = read_image_source(_write(tmp_path / 'changing.jpg', plain))
    _write(tmp_path / 'changing.jpg', plain + b'more')
    with pytest.raises(ImageLoadError, match='changing.jpg changed while it was read'):
        jpeg.read_into(np.empty(jpeg.size, np.uint8))


@pytest.mark.parametrize('readv', [True, False], ids=['os.readv', 'no os.readv (Windows)'])
def test_image_files_read_through_a_descriptor(tmp_path, monkeypatch, readv):
    if not readv:
        monkeypatch.setattr(image_io, '_readv', None)
    data = bytes(range(256)) * 700
    path = _write(tmp_path / 'a.jpg', data)
    assert read_file_bytes(path).tobytes() == data
    with ImageFile(path) as fd:  # a file longer than the array: the rest comes back
        out = np.empty(1000, np.uint8)
        size, rest = read_into(fd, out)
    assert size == 1000 and out.tobytes() == data[:1000] and rest == data[1000:]
    with ImageFile(path) as fd:  # shorter
        out = np.zeros(len(data) + 10, np.uint8)
        assert read_into(fd, out) == (len(data), b'') and out[:len(data)].tobytes() == data
    folder = tmp_path / 'folder.jpg'
    folder.mkdir()
    for read in (read_file_bytes, read_image_source):  # os.open opens a folder; reading it fails
        with pytest.raises(ImageLoadError, match=r'cannot read image file .*folder\.jpg: Is a directory'):
            read(str(folder))
    with pytest.raises(ImageLoadError, match='image file not found: .*gone.jpg'):
        read_image_source(str(tmp_path / 'gone.jpg'))


@needs_coco
def test_a_failed_read_hands_the_pooled_buffer_back(tmp_path, monkeypatch):
    cfg = coco_cfg(pipeline=geometric_pipeline(RLE_CODEC))
    raw_ds = RawSampleDataset(build_dataset(cfg), dataset_recipes(cfg))
    samples = raw_ds.__getitems__([(0, 1), (1, 2)])
    samples[1]['jpeg'] = JpegFile(_write(tmp_path / 'gone.jpg', b'x'), samples[1]['jpeg'].size)
    monkeypatch.setattr(raw_batch, 'get_worker_info', lambda: object())  # as in a loader worker
    pool = BufferPool(1)
    with pytest.raises(ImageLoadError, match='gone.jpg changed'):
        collate_raw(samples, pool)
    assert pool._slots[0].flag[0] == FREE
    assert collate_raw(samples[:1], pool)['lease'] is not None


@needs_coco
def test_the_device_loader_hands_every_batch_back(monkeypatch):
    monkeypatch.setattr(buffer_pool, '_received', {})
    handed_back = []

    def spy(raw):
        handed_back.append(raw['lease'] is not None)
        release(raw)
    monkeypatch.setattr(device_loader, 'release', spy)
    dataset = coco_cfg(pipeline=geometric_pipeline(RLE_CODEC))
    recipes = choose_input_pipeline('device', torch.device('cpu'), dataset, logging.getLogger('test'))
    loader = build_train_loader(dict(batch_size=2, num_workers=2, sampler=dict(type='DefaultSampler'),
                                     dataset=dataset), recipes, torch.device('cpu'), seed=0)
    assert len(list(loader)) == len(loader) == len(handed_back) and all(handed_back)  # all pooled
    # the epoch's workers have exited: the main process keeps none of their buffers
    assert buffer_pool._received == {}
