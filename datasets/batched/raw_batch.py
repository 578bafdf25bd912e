"""collate_raw: pack the raw samples of a batch (:func:`~datasets.batched.host_sample.raw_sample`) into
ONE flat uint8 tensor plus a small host-side layout.

One tensor per batch means one shared-memory handle from the loader worker to the main process (256
per-sample tensors cost 86-94 ms to receive, one flat tensor 7-22 ms), one buffer to pin, and one
non-blocking host-to-device copy. The buffer holds, in order:

1. the uploaded part (:data:`RawBatch` ``upload_bytes``): every numeric per-sample field (8-byte
   aligned, see ``fields``), each photometric step's sample groups (indices and stacked parameters,
   :func:`~datasets.batched.photometric.plan_groups`) and the RGB pixels of the images the worker
   decoded with OpenCV;
2. the JPEG bytes that the device decoder reads from host memory (nvJPEG takes host input), read
   here from the files straight into the buffer (``host_sample.JpegFile``).

A raw batch (a dict) holds ``buffer``, ``fields`` {name: (byte offset, numpy dtype str, shape)},
``upload_bytes``, ``sample_fields`` (the field names with a leading batch dim), ``jpeg`` (per sample:
(offset, length) of its JPEG bytes, or None), ``pixels`` (per sample: (offset, h, w) of its RGB
uint8 pixels, or None), ``photometric`` (per step: (key, has_index, parameter names) per group),
the host lists ``img_path`` and ``dataset_name``, ``key`` (B, 2) int64 numpy (sample index, seed;
seed -1: none), ``stage`` and ``lease`` (a ``buffer_pool.BufferLease`` when the buffer is lent by a
worker's pool, else None).

Per-sample fields: ``img_hw`` (B, 2) int64 (h, w); annotations ``bbox`` (B, 4) xyxy, ``keypoints``
(B, K, 2) image px, ``keypoints_visible`` (B, K), ``dataset_keypoint_weights`` (B, K); the instance
meta of ``datasets.transforms.formatting.instance_meta`` (numbers only); drawn ``flip`` (B,)
int64, ``half_body`` (B, K) bool, ``shift`` (B, 2), ``scale`` (B,), ``rotation`` (B,) float32.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

from datasets.batched.buffer_pool import BufferLease, BufferPool, Handle, receive
from datasets.batched.host_sample import JpegFile
from datasets.batched.photometric import plan_groups
from datasets.transforms.formatting import INT_META_KEYS, STR_META_KEYS

RawBatch = dict[str, Any]


class _PooledBatch(dict):
    """A raw batch in a worker's pooled buffer, as the worker sends it: the buffer itself travels only
    with the first batch in it, later ones name it (``buffer_pool.BufferLease.handle``). The main
    process receives a plain dict."""


def _reduce_pooled_batch(raw: _PooledBatch) -> tuple[Any, tuple[Any, ...]]:
    handle = raw['lease'].handle(raw['buffer'])
    if handle is None:  # its buffer was replaced: sent as a plain dict
        return dict, (dict(raw),)
    items = [(k, None if k in ('buffer', 'lease') else v) for k, v in raw.items()]
    return _rebuild_pooled_batch, (items, handle)


def _rebuild_pooled_batch(items: list[tuple[str, Any]], handle: Handle) -> RawBatch:
    raw = dict(items)
    raw['buffer'], raw['lease'] = receive(handle)
    return raw


ForkingPickler.register(_PooledBatch, _reduce_pooled_batch)  # how loader workers send them

_ALIGN = 8
_SAMPLE_DTYPES = {'img_hw': np.int64, 'flip': np.int64, 'half_body': np.bool_, 'bbox': np.float32,
                  'keypoints': np.float32, 'keypoints_visible': np.float32,
                  'dataset_keypoint_weights': np.float32, 'shift': np.float32, 'scale': np.float32,
                  'rotation': np.float32, 'bbox_score': np.float32, 'area': np.float32,
                  **{k: np.int64 for k in INT_META_KEYS}}
FieldLayout = dict[str, tuple[int, str, tuple[int, ...]]]  # name: (byte offset, numpy dtype str, shape)
_TORCH_DTYPES = {np.dtype(t).str: getattr(torch, np.dtype(t).name)
                 for t in (np.bool_, np.uint8, np.int16, np.int32, np.int64, np.float32, np.float64)}


def _stack(name: str, values: list[Any], dtype: Any) -> np.ndarray:
    try:
        return np.array(values, dtype=dtype)  # 3-30x faster than np.stack for a batch of small arrays
    except ValueError as e:
        shapes = sorted({np.shape(v) for v in values})
        raise ValueError(f'collate_raw: "{name}" differs in shape across the batch: {shapes}') from e


def _allocate(nbytes: int, pool: BufferPool | None) -> tuple[torch.Tensor, BufferLease | None]:
    """A uint8 buffer; in a loader worker directly in shared memory, so sending it copies nothing
    (from ``pool`` when given: then with its lease)."""
    if get_worker_info() is None:
        return torch.empty(nbytes, dtype=torch.uint8), None
    if pool is not None:
        return pool.take(nbytes)
    return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(nbytes)), None


def pack(arrays: Mapping[str, np.ndarray], blobs: Sequence[np.ndarray | JpegFile], uploaded_blobs: int,
         pool: BufferPool | None = None
         ) -> tuple[torch.Tensor, FieldLayout, list[int], int, BufferLease | None]:
    """One flat uint8 buffer holding ``arrays`` (each at an 8-byte aligned offset) then ``blobs``
    (uint8 arrays, or files read into the buffer), in a loader worker from ``pool`` when given.
    Returns (buffer, fields {name: (offset, dtype str, shape)}, blob offsets, upload_bytes: the end of
    the arrays and of the first ``uploaded_blobs`` blobs, the buffer's lease or None)."""
    fields, offset = {}, 0
    for name, array in arrays.items():
        fields[name] = (offset, array.dtype.str, array.shape)
        offset += -(-array.nbytes // _ALIGN) * _ALIGN
    starts = []
    upload_bytes = offset
    for i, blob in enumerate(blobs):
        starts.append(offset)
        offset += blob.nbytes
        if i < uploaded_blobs:
            upload_bytes = offset
    buffer, lease = _allocate(offset, pool)
    host = buffer.numpy()
    for name, array in arrays.items():
        start = fields[name][0]
        host[start:start + array.nbytes] = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    try:
        for start, blob in zip(starts, blobs):
            if isinstance(blob, JpegFile):
                blob.read_into(host[start:start + blob.nbytes])
            else:
                host[start:start + blob.nbytes] = blob.reshape(-1)
    except BaseException:
        if lease is not None:  # the batch is not sent: the buffer goes back to the pool
            lease.release()
        raise
    return buffer, fields, starts, upload_bytes, lease


def field_views(buffer: torch.Tensor, fields: Mapping[str, tuple[int, str, tuple[int, ...]]]
                ) -> dict[str, torch.Tensor]:
    """The typed views of ``fields`` in ``buffer`` (a raw batch's buffer, or its upload on the device)."""
    out = {}
    for name, (offset, dtype, shape) in fields.items():
        torch_dtype = _TORCH_DTYPES[dtype]
        nbytes = int(np.prod(shape, dtype=np.int64)) * torch_dtype.itemsize
        out[name] = buffer[offset:offset + nbytes].view(torch_dtype).view(shape)
    return out


def host_fields(raw: RawBatch, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Numpy views (writable) of fields ``names`` in the host buffer of ``raw``."""
    return {k: v.numpy() for k, v in field_views(raw['buffer'], {k: raw['fields'][k] for k in names}).items()}


def photometric_field(step: int, group: int, name: str) -> str:
    """The field name of photometric step ``step``'s group ``group``: its ``index`` or a parameter."""
    return f'photometric.{step}.{group}.{name}'


def collate_raw(samples: Sequence[Mapping[str, Any]], pool: BufferPool | None = None) -> RawBatch:
    """Batch raw samples (see the module docstring for the layout); in a loader worker, into a buffer
    of ``pool`` when given (``functools.partial(collate_raw, pool=BufferPool())`` as the loader's
    ``collate_fn``; the consumer then hands each batch back with ``buffer_pool.release``)."""
    if not samples:
        raise ValueError('collate_raw got an empty batch')
    stages = {s['stage'] for s in samples}
    if len(stages) != 1:
        raise ValueError(f'collate_raw: samples of different pipeline stages {sorted(stages)} in one batch')
    arrays = {name: _stack(name, [s[name] for s in samples], dtype) for name, dtype in _SAMPLE_DTYPES.items()}
    sample_fields = tuple(arrays)
    photometric = []
    for j in range(len(samples[0]['photometric'])):
        groups = plan_groups([s['photometric_keys'][j] for s in samples],
                             [s['photometric'][j] for s in samples])
        photometric.append([(g.key, g.index is not None, tuple(g.params)) for g in groups])
        for k, group in enumerate(groups):
            if group.index is not None:
                arrays[photometric_field(j, k, 'index')] = group.index
            arrays.update({photometric_field(j, k, name): v for name, v in group.params.items()})
    pixels = [i for i, s in enumerate(samples) if s['image'] is not None]
    jpegs = [i for i, s in enumerate(samples) if s['jpeg'] is not None]
    blobs = [np.ascontiguousarray(samples[i]['image'][..., ::-1]) for i in pixels]  # BGR -> RGB
    blobs += [samples[i]['jpeg'] for i in jpegs]
    buffer, fields, starts, upload_bytes, lease = pack(arrays, blobs, len(pixels), pool)
    pixel_spans: list[tuple[int, int, int] | None] = [None] * len(samples)
    jpeg_spans: list[tuple[int, int] | None] = [None] * len(samples)
    for i, start in zip(pixels, starts):
        h, w = samples[i]['image'].shape[:2]
        pixel_spans[i] = (start, h, w)
    for i, start in zip(jpegs, starts[len(pixels):]):
        jpeg_spans[i] = (start, samples[i]['jpeg'].size)
    keys = np.array([s.get('key', (-1, -1)) for s in samples], dtype=np.int64).reshape(-1, 2)
    out: RawBatch = {'buffer': buffer, 'fields': fields, 'upload_bytes': upload_bytes,
                     'sample_fields': sample_fields, 'jpeg': jpeg_spans, 'pixels': pixel_spans,
                     'photometric': photometric, 'stage': stages.pop(), 'key': keys, 'lease': lease}
    out.update({k: [s[k] for s in samples] for k in STR_META_KEYS})
    return out if lease is None else _PooledBatch(out)
