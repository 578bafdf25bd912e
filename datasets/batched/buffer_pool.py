"""Shared-memory buffers that a loader worker reuses for its raw batches instead of allocating one per batch.

A fresh shared-memory buffer per batch costs the worker system time (creating the segment, and the
kernel zeroing every page on first write: 0.13 ms per sample of 140 kB of JPEG bytes on the 2-core
test machine, against 0.005 ms to refill a buffer) and the main process a new mapping per batch. A
:class:`BufferPool` keeps a few buffers per worker and hands one out again once the consumer of the
batch has said it is done with it (:func:`release`); torch's ``DataLoader`` has no way back from the
main process to a worker, so the buffer itself carries that message: its first byte is ``IN_USE``
while a batch in it is out, and the consumer writes ``FREE`` there (the main process maps the same
memory) when nothing reads the batch any more.

Safety rests on the consumer: it releases a batch only when nothing it made still reads the buffer
(``DeviceBatchLoader`` releases after the pipeline's run; the pipeline's upload copies on the CPU,
the loader's pinned copy serves CUDA). A batch that is never released keeps its buffer out of the
pool for good, so a consumer that knows nothing of the pool gets correct batches (the worker
allocates fresh buffers once its pool is exhausted).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

HEADER = 64  # bytes before the batch: the flag, and 64-byte alignment of the batch's fields
FREE, IN_USE = 0, 1
_GRANULE = 1 << 16  # capacities are rounded up to 64 kB


def _shared(nbytes: int) -> torch.Tensor:
    return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(nbytes))


def _flag(buffer: torch.Tensor) -> np.ndarray:
    """The (1,) uint8 flag at the start of ``buffer``'s storage (a view: writes reach the other process)."""
    return torch.empty(0, dtype=torch.uint8).set_(buffer.untyped_storage(), 0, (1,), (1,)).numpy()


class BufferLease:
    """A pooled buffer lent out with one raw batch; ``release()`` hands it back to its worker's pool.

    Pickled with the batch, it refers to the very tensor of the batch's ``buffer`` (so the buffer is
    still sent once) and keeps that memory mapped in the main process until it is released, also
    after the loader's pin-memory thread replaced the batch's ``buffer`` by a pinned copy.
    """

    def __init__(self, buffer: torch.Tensor) -> None:
        self.buffer: torch.Tensor | None = buffer

    def release(self) -> None:
        """Mark the buffer free for its worker to refill; nothing may read the batch's original buffer
        afterwards. Releasing twice does nothing."""
        if self.buffer is not None:
            _flag(self.buffer)[0] = FREE
            self.buffer = None


def release(raw: dict[str, Any]) -> None:
    """Hand the buffer of raw batch ``raw`` back to the loader worker that made it (a no-op for a batch
    made in this process or without a pool). Call it when nothing reads ``raw['buffer']`` any more:
    the worker overwrites it with a later batch."""
    lease = raw.get('lease')
    if lease is not None:
        lease.release()


class BufferPool:
    """Up to ``slots`` shared-memory buffers of one loader worker, each lent to one batch at a time.

    The pool object is built in the main process (e.g. inside the collate function) and copied into
    every worker; each worker process fills its own copy.

    Args:
        slots: most buffers kept per worker. A worker has up to ``prefetch_factor`` (default 2)
            batches in flight and the consumer holds one or two more, so 4 covers the loaders here;
            beyond it, fresh buffers are allocated (and not kept).
    """

    def __init__(self, slots: int = 4) -> None:
        if slots < 1:
            raise ValueError(f'BufferPool needs at least 1 slot, got {slots}')
        self.slots = slots
        self._pid: int | None = None
        self._buffers: list[torch.Tensor] = []  # whole storages, HEADER included
        self._flags: list[np.ndarray] = []

    def __getstate__(self) -> dict[str, Any]:  # a spawned worker starts with an empty pool
        return {'slots': self.slots, '_pid': None, '_buffers': [], '_flags': []}

    def take(self, nbytes: int) -> tuple[torch.Tensor, BufferLease | None]:
        """A shared uint8 tensor of ``nbytes`` (a view into a pooled buffer, 64-byte aligned) and its
        lease; without a free slot, a fresh shared tensor and ``None``."""
        if self._pid != os.getpid():  # a forked copy holds its parent's buffers: not ours to lend
            self._pid, self._buffers, self._flags = os.getpid(), [], []
        need = HEADER + nbytes
        free = [i for i, flag in enumerate(self._flags) if flag[0] == FREE]
        fits = [i for i in free if self._buffers[i].numel() >= need]
        if fits:
            slot = min(fits, key=lambda i: self._buffers[i].numel())
        elif free or len(self._buffers) < self.slots:
            capacity = -(-(need + need // 8) // _GRANULE) * _GRANULE  # room for the next, larger batches
            buffer = _shared(capacity)
            if free:  # replace a free buffer that is too small
                slot = free[0]
                self._buffers[slot], self._flags[slot] = buffer, _flag(buffer)
            else:
                slot = len(self._buffers)
                self._buffers.append(buffer)
                self._flags.append(_flag(buffer))
        else:
            return _shared(nbytes), None
        self._flags[slot][0] = IN_USE
        view = self._buffers[slot][HEADER:need]
        return view, BufferLease(view)
