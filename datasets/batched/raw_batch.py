"""collate_raw: pack the raw samples of a batch (:func:`~datasets.batched.host_sample.raw_sample`) into
ONE flat uint8 tensor plus a small host-side layout.

One tensor per batch means one shared-memory handle from the loader worker to the main process (256
per-sample tensors cost 86-94 ms to receive, one flat tensor 7-22 ms), one buffer to pin, and one
non-blocking host-to-device copy. The buffer holds, in order:

1. the uploaded part (:data:`RawBatch` ``upload_bytes``): every numeric per-sample field (8-byte
   aligned, see ``fields``), each photometric step's sample groups (indices and stacked parameters,
   :func:`~datasets.batched.photometric.plan_groups`) and the RGB pixels of the images the worker
   decoded with OpenCV;
2. the JPEG bytes that the device decoder reads from host memory (nvJPEG takes host input).

A raw batch (a dict) holds ``buffer``, ``fields`` {name: (byte offset, numpy dtype str, shape)},
``upload_bytes``, ``sample_fields`` (the field names with a leading batch dim), ``jpeg`` (per sample:
(offset, length) of its JPEG bytes, or None), ``pixels`` (per sample: (offset, h, w) of its RGB
uint8 pixels, or None), ``photometric`` (per step: (key, has_index, parameter names) per group),
the host lists ``img_path`` and ``dataset_name``, ``key`` (B, 2) int64 numpy (sample index, seed;
seed -1: none) and ``stage``.

Per-sample fields: ``img_hw`` (B, 2) int64 (h, w); annotations ``bbox`` (B, 4) xyxy, ``keypoints``
(B, K, 2) image px, ``keypoints_visible`` (B, K), ``dataset_keypoint_weights`` (B, K); the instance
meta of ``datasets.transforms.formatting.instance_meta`` (numbers only); drawn ``flip`` (B,)
int64, ``half_body`` (B, K) bool, ``shift`` (B, 2), ``scale`` (B,), ``rotation`` (B,) float32.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

from datasets.batched.photometric import plan_groups
from datasets.transforms.formatting import INT_META_KEYS, STR_META_KEYS

RawBatch = dict[str, Any]

_ALIGN = 8
_SAMPLE_DTYPES = {'img_hw': np.int64, 'flip': np.int64, 'half_body': np.bool_, 'bbox': np.float32,
                  'keypoints': np.float32, 'keypoints_visible': np.float32,
                  'dataset_keypoint_weights': np.float32, 'shift': np.float32, 'scale': np.float32,
                  'rotation': np.float32, 'bbox_score': np.float32, 'area': np.float32,
                  **{k: np.int64 for k in INT_META_KEYS}}
_TORCH_DTYPES = {np.dtype(t).str: getattr(torch, np.dtype(t).name)
                 for t in (np.bool_, np.uint8, np.int16, np.int32, np.int64, np.float32, np.float64)}


def _stack(name: str, values: list[Any], dtype: Any) -> np.ndarray:
    try:
        return np.stack([np.asarray(v, dtype=dtype) for v in values])
    except ValueError as e:
        shapes = sorted({np.shape(v) for v in values})
        raise ValueError(f'collate_raw: "{name}" differs in shape across the batch: {shapes}') from e


def _allocate(nbytes: int) -> torch.Tensor:
    """A uint8 buffer; in a loader worker directly in shared memory, so sending it copies nothing."""
    if get_worker_info() is None:
        return torch.empty(nbytes, dtype=torch.uint8)
    return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(nbytes))


def pack(arrays: Mapping[str, np.ndarray], blobs: Sequence[np.ndarray], uploaded_blobs: int
         ) -> tuple[torch.Tensor, dict[str, tuple[int, str, tuple[int, ...]]], list[int], int]:
    """One flat uint8 buffer holding ``arrays`` (each at an 8-byte aligned offset) then ``blobs``
    (uint8 arrays). Returns (buffer, fields {name: (offset, dtype str, shape)}, blob offsets,
    upload_bytes: the end of the arrays and of the first ``uploaded_blobs`` blobs)."""
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
    buffer = _allocate(offset)
    host = buffer.numpy()
    for name, array in arrays.items():
        start = fields[name][0]
        host[start:start + array.nbytes] = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    for start, blob in zip(starts, blobs):
        host[start:start + blob.nbytes] = blob.reshape(-1)
    return buffer, fields, starts, upload_bytes


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


def collate_raw(samples: Sequence[Mapping[str, Any]]) -> RawBatch:
    """Batch raw samples (see the module docstring for the layout)."""
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
    buffer, fields, starts, upload_bytes = pack(arrays, blobs, len(pixels))
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
                     'photometric': photometric, 'stage': stages.pop(), 'key': keys}
    out.update({k: [s[k] for s in samples] for k in STR_META_KEYS})
    return out
