"""DeviceBatchLoader: training batches made on the device from a raw-batch loader, prepared ahead in a
background thread (on CUDA in a side stream) so that decoding and cropping overlap the training step."""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import torch

from datasets.batched.pipeline import DeviceTopdownPipeline
from datasets.loader import PoseDataLoader

_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _tensors(node: Any) -> Iterator[torch.Tensor]:
    if isinstance(node, torch.Tensor):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _tensors(value)


class DeviceBatchLoader:
    """Iterate ``pipeline(raw)`` for the raw batches of ``loader``, up to ``depth`` batches ahead.

    Behaves like the loader it wraps for the training loop: ``len``, ``set_epoch``,
    ``with_stage2``, ``dataset``; batches come in the loader's order, and an error in loading
    or in the pipeline (e.g. an ``ImageLoadError`` naming a file) is raised where the batch would
    have been yielded.
    """

    def __init__(self, loader: PoseDataLoader, pipeline: DeviceTopdownPipeline, depth: int = 2) -> None:
        self.loader = loader
        self.pipeline = pipeline
        self.depth = depth

    @property
    def dataset(self) -> Any:
        return self.loader.dataset

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def with_stage2(self) -> DeviceBatchLoader | None:
        """The loader to use from stage 2 on (see ``PoseDataLoader.with_stage2``), or None."""
        loader = self.loader.with_stage2()
        return None if loader is None else DeviceBatchLoader(loader, self.pipeline, self.depth)

    def _produce(self, out: queue.Queue, stop: threading.Event) -> None:
        device = self.pipeline.device
        stream = torch.cuda.Stream(device) if device.type == 'cuda' else None
        item: Any = _END
        try:
            for raw in self.loader:
                with torch.cuda.stream(stream) if stream is not None else nullcontext():
                    batch = self.pipeline(raw)
                    event = torch.cuda.Event() if stream is not None else None
                    if event is not None:
                        event.record(stream)
                if not self._put(out, (batch, event), stop):
                    return
        except BaseException as err:  # handed to the consumer, raised there
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

    def __iter__(self) -> Iterator[dict[str, Any]]:
        out: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        worker = threading.Thread(target=self._produce, args=(out, stop), daemon=True,
                                  name='device-batch-loader')
        worker.start()
        try:
            while True:
                item = out.get()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.error
                batch, event = item
                if event is not None:  # made on the side stream: order it before the step's kernels
                    current = torch.cuda.current_stream(self.pipeline.device)
                    current.wait_event(event)
                    for tensor in _tensors(batch):
                        tensor.record_stream(current)
                yield batch
        finally:
            stop.set()
            worker.join()
