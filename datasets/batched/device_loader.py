"""DeviceBatchLoader: training batches made on the device from a raw-batch loader, prepared ahead in a
background thread (on CUDA in a side stream) so that decoding and cropping overlap the training step.

It checks itself: the first batch is compared with the per-sample pipeline on a few samples of the
same seeds (``datasets.batched.self_check``); if they differ, or if the device pipeline raises
anything but an error in the user's data, training warns once (with the measured difference or the
error) and goes on with the per-sample pipeline, from the batch where it stopped. An unexpected
device behaviour can then neither corrupt a run silently nor stop it.
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Iterable, Iterator, Sized
from contextlib import nullcontext
from typing import Any

import torch

from datasets.batched.buffer_pool import forget_exited_workers, release
from datasets.batched.pipeline import DeviceTopdownPipeline
from datasets.batched.self_check import batch_differences, first_samples
from datasets.collate import pose_collate
from datasets.loader import PoseDataLoader
from utils.errors import ReportedError

logger = logging.getLogger('mmpose_clean.datasets')  # a child of utils.logger's logger: in train.log

_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _SkipBatches:
    """A batch sampler without its first ``skip`` batches (the per-sample loader resuming an epoch)."""

    def __init__(self, batches: Iterable, skip: int) -> None:
        self.batches, self.skip = batches, skip

    def __iter__(self) -> Iterator:
        return itertools.islice(iter(self.batches), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.batches) - self.skip) if isinstance(self.batches, Sized) else 0


def _tensors(node: Any) -> Iterator[torch.Tensor]:
    if isinstance(node, torch.Tensor):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _tensors(value)


class DeviceBatchLoader:
    """Iterate ``pipeline(raw)`` for the raw batches of ``loader``, up to ``depth`` batches ahead.

    Behaves like the loader it wraps for the training loop: ``len``, ``set_epoch``,
    ``with_stage2``, ``dataset``; batches come in the loader's order. An error in the user's data
    (a ``ReportedError`` such as an ``ImageLoadError`` naming a file) is raised where the batch would
    have been yielded; any other failure of the device side, stream creation included, and a first
    batch that fails the self-check switch the run to the per-sample pipeline (``fallen_back``)
    with one warning.

    Args:
        loader: yields raw batches (``RawSampleDataset`` + ``collate_raw``).
        pipeline: makes the training batch of a raw batch on its device.
        depth: batches prepared ahead.
        check_samples: samples of the first batch compared with the per-sample pipeline (0: none).
    """

    def __init__(self, loader: PoseDataLoader, pipeline: DeviceTopdownPipeline, depth: int = 2,
                 check_samples: int = 4) -> None:
        self.loader = loader
        self.pipeline = pipeline
        self.depth = depth
        self.check_samples = check_samples
        self.fallen_back = False
        self._checked = check_samples <= 0
        self._per_sample: PoseDataLoader | None = None

    @property
    def dataset(self) -> Any:
        return self.loader.dataset

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def with_stage2(self) -> DeviceBatchLoader | None:
        """The loader to use from stage 2 on (see ``PoseDataLoader.with_stage2``), or None. It checks its
        own first batch (another recipe), unless the run already went back to the per-sample pipeline."""
        loader = self.loader.with_stage2()
        if loader is None:
            return None
        stage2 = DeviceBatchLoader(loader, self.pipeline, self.depth, self.check_samples)
        stage2.fallen_back = self.fallen_back
        return stage2

    def per_sample_loader(self, skip: int = 0) -> PoseDataLoader:
        """The per-sample loader of the same dataset, order and seeds (the wrapped dataset's own
        pipeline, ``pose_collate``), without the first ``skip`` batches of the epoch."""
        raw = self.loader
        if skip == 0 and self._per_sample is not None:
            return self._per_sample
        extra = {}
        if raw.num_workers > 0:
            extra = {'persistent_workers': raw.persistent_workers and skip == 0,
                     'prefetch_factor': raw.prefetch_factor}
        batches = raw.batch_sampler if skip == 0 else _SkipBatches(raw.batch_sampler, skip)
        loader = PoseDataLoader(raw.dataset.dataset, batch_sampler=batches,
                                num_workers=raw.num_workers, collate_fn=pose_collate,
                                pin_memory=raw.pin_memory, worker_init_fn=raw.worker_init_fn, **extra)
        if skip == 0:
            self._per_sample = loader
        return loader

    def _produce(self, out: queue.Queue, stop: threading.Event) -> None:
        item: Any = _END
        try:  # everything, stream creation included: the consumer must never wait for nothing
            device = self.pipeline.device
            stream = None
            if device.type == 'cuda':
                torch.cuda.set_device(device)  # this thread's current device (DDP: the rank's own)
                stream = torch.cuda.Stream(device)
            for raw in self.loader:
                with torch.cuda.stream(stream) if stream is not None else nullcontext():
                    batch = self.pipeline(raw)
                    event = torch.cuda.Event() if stream is not None else None
                    if event is not None:
                        event.record(stream)
                release(raw)  # the worker may refill its buffer: the batch no longer reads it
                if not self._put(out, (batch, event, raw['key']), stop):
                    return
            forget_exited_workers()  # of an epoch's workers, their buffers (buffer_pool.receive)
        except BaseException as err:  # handed to the consumer, raised or reported there
            item = _Failure(err)
        self._put(out, item, stop)

    @staticmethod
    def _put(out: queue.Queue, item: Any, stop: threading.Event) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _self_check(self, batch: dict[str, Any], keys: Any) -> str | None:
        """Why the first batch is not trusted (the measured differences), or None."""
        self._checked = True
        n = min(self.check_samples, len(keys))
        if any(seed < 0 for _, seed in keys[:n]):  # unseeded samples cannot be drawn again
            return None
        dataset = self.loader.dataset.dataset
        expected = pose_collate([dataset[(int(index), int(seed))] for index, seed in keys[:n]])
        problems = batch_differences(expected, first_samples(batch, n))
        if not problems:
            return None
        return (f'its first batch differs from the per-sample pipeline on {n} samples of the same seeds: '
                + '; '.join(problems))

    def _fall_back(self, reason: str) -> None:
        self.fallen_back = True
        logger.warning('input pipeline: the batched pipeline on %s is not used: %s; continuing with the '
                       'per-sample CPU pipeline', self.pipeline.device, reason)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.fallen_back:
            yield from self.per_sample_loader()
            return
        out: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        worker = threading.Thread(target=self._produce, args=(out, stop), daemon=True,
                                  name='device-batch-loader')
        worker.start()
        done, reason = 0, None
        try:
            while True:
                item = out.get()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    if isinstance(item.error, ReportedError) or not isinstance(item.error, Exception):
                        raise item.error  # the user's data (names the file), or an interrupt
                    reason = f'batch {done + 1} failed: {type(item.error).__name__}: {item.error}'
                    break
                batch, event, keys = item
                if event is not None:  # made on the side stream: order it before the step's kernels
                    current = torch.cuda.current_stream(self.pipeline.device)
                    current.wait_event(event)
                    for tensor in _tensors(batch):
                        tensor.record_stream(current)
                if not self._checked:
                    reason = self._self_check(batch, keys)
                    if reason is not None:
                        break
                done += 1
                yield batch
        finally:
            stop.set()
            worker.join()
        self._fall_back(reason)
        yield from self.per_sample_loader(skip=done)
