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

A pooled buffer travels to the main process once: torch sends a shared tensor as a file descriptor
through a socket, with a handshake, for every batch (0.01-0.02 ms of worker and main-process CPU time
per sample at batch 64). A batch in a pooled buffer names it by its token instead
(:meth:`BufferLease.handle`), and the main process keeps the buffers it has received
(:func:`receive`) until their worker has exited (:func:`forget_exited_workers`), or replaced them by
larger ones.
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


class _Slot:
    """One pooled buffer of a worker: the whole shared storage (:data:`HEADER` included), its flag, its
    token ``(worker pid, random number)`` and whether the main process has been sent the buffer yet."""

    def __init__(self, nbytes: int, retired: tuple[int, int] | None) -> None:
        self.buffer = _shared(nbytes)
        self.flag = _flag(self.buffer)
        self.token = (os.getpid(), int.from_bytes(os.urandom(8), 'little'))
        self.sent = False
        self.retired = retired  # the token of the buffer this one replaced, for the main process to drop


Handle = tuple[tuple[int, int], torch.Tensor | None, tuple[int, int] | None, int, int]


class BufferLease:
    """A pooled buffer lent out with one raw batch; ``release()`` hands it back to its worker's pool.

    In the main process it keeps the buffer mapped until it is released, also after the loader's
    pin-memory thread replaced the batch's ``buffer`` by a pinned copy.
    """

    def __init__(self, buffer: torch.Tensor, slot: _Slot | None = None) -> None:
        self.buffer: torch.Tensor | None = buffer
        self._slot = slot  # in the worker that lent it

    def release(self) -> None:
        """Mark the buffer free for its worker to refill; nothing may read the batch's original buffer
        afterwards. Releasing twice does nothing."""
        if self.buffer is not None:
            _flag(self.buffer)[0] = FREE
            self.buffer = None

    def handle(self, buffer: torch.Tensor | None) -> Handle | None:
        """How the main process finds the batch's ``buffer`` (:func:`receive`): ``(token, the whole pooled
        buffer the first time it is sent else None, the token it replaced or None, start, stop)``, start
        and stop in bytes of the whole buffer; ``None`` (send the buffer itself) when ``buffer`` is not
        the one this lease lent. The worker's pickler calls it once per batch it sends."""
        slot = self._slot
        if slot is None or buffer is None or buffer is not self.buffer:
            return None
        first = not slot.sent
        slot.sent = True
        start = buffer.storage_offset()
        return (slot.token, slot.buffer if first else None, slot.retired if first else None,
                start, start + buffer.numel())


_received: dict[tuple[int, int], torch.Tensor] = {}  # main process: token -> a worker's whole buffer
if hasattr(os, 'register_at_fork'):  # a forked worker maps none of them
    os.register_at_fork(after_in_child=lambda: _received.clear())


def forget_exited_workers() -> None:
    """Drop the buffers received from loader workers that have exited (the main process calls it when a
    new buffer arrives, and the device loader at the end of each epoch, after which a loader without
    persistent workers has joined them)."""
    if os.name != 'posix':  # os.kill(pid, 0) checks a process on POSIX only
        return
    tokens = list(_received)  # one step under the GIL: the pin-memory thread may receive meanwhile
    for pid in {token[0] for token in tokens}:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            for token in tokens:
                if token[0] == pid:
                    _received.pop(token, None)
        except OSError:  # another user's process: it exists
            pass


def receive(handle: Handle) -> tuple[torch.Tensor, BufferLease]:
    """The main process's side of :meth:`BufferLease.handle`: the batch's buffer (a view into the pooled
    buffer, received with the first batch in it) and its lease.

    Raises:
        RuntimeError: the handle names a buffer this process was never sent (a batch pickled by a
            worker for another process).
    """
    token, whole, retired, start, stop = handle
    if whole is not None:  # a new buffer: a new worker, or a larger buffer for the same slot
        _received.pop(retired, None)
        forget_exited_workers()
        _received[token] = whole
    whole = _received.get(token)
    if whole is None:
        raise RuntimeError(f'a raw batch names shared buffer {token[1]:#x} of loader worker {token[0]}, '
                           'which this process was never sent')
    view = whole[start:stop]
    return view, BufferLease(view)


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
        self._slots: list[_Slot] = []

    def __getstate__(self) -> dict[str, Any]:  # a spawned worker starts with an empty pool
        return {'slots': self.slots, '_pid': None, '_slots': []}

    def take(self, nbytes: int) -> tuple[torch.Tensor, BufferLease | None]:
        """A shared uint8 tensor of ``nbytes`` (a view into a pooled buffer, 64-byte aligned) and its
        lease; without a free slot, a fresh shared tensor and ``None``."""
        if self._pid != os.getpid():  # a forked copy holds its parent's buffers: not ours to lend
            self._pid, self._slots = os.getpid(), []
        need = HEADER + nbytes
        free = [i for i, slot in enumerate(self._slots) if slot.flag[0] == FREE]
        fits = [i for i in free if self._slots[i].buffer.numel() >= need]
        if fits:
            i = min(fits, key=lambda i: self._slots[i].buffer.numel())
        elif free or len(self._slots) < self.slots:
            capacity = -(-(need + need // 8) // _GRANULE) * _GRANULE  # room for the next, larger batches
            if free:  # replace a free buffer that is too small
                i = free[0]
                old = self._slots[i]
                self._slots[i] = _Slot(capacity, old.token if old.sent else old.retired)
            else:
                i = len(self._slots)
                self._slots.append(_Slot(capacity, None))
        else:
            return _shared(nbytes), None
        slot = self._slots[i]
        slot.flag[0] = IN_USE
        view = slot.buffer[HEADER:need]
        return view, BufferLease(view, slot)
