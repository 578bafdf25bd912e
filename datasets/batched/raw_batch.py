"""collate_raw: stack :func:`~datasets.batched.host_sample.raw_sample` dicts into a raw batch.

A raw batch holds no pixels of plain JPEGs, only their bytes: ``jpeg`` list of uint8 tensors (or
``None``), ``image`` list of loader-decoded BGR uint8 (H, W, 3) tensors (or ``None``), ``img_hw``
(B, 2) int64 (h, w); annotations ``bbox`` (B, 4) xyxy, ``keypoints`` (B, K, 2) image px,
``keypoints_visible`` (B, K), ``flip_indices`` (B, K) int64, ``dataset_keypoint_weights`` (B, K);
meta ``img_id``/``id``/``category_id`` (B,) int64, ``bbox_score``/``area`` (B,) float32,
``img_path``/``dataset_name`` lists; drawn ``flip`` (B,) int64, ``half_body`` (B, K) bool,
``shift`` (B, 2), ``scale`` (B,), ``rotation`` (B,) float32 and ``photometric`` (one dict of
stacked (B, ...) tensors per augmentation); ``stage`` (int).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from datasets.batched.photometric import stack_params

_INT64 = ('img_hw', 'flip_indices', 'img_id', 'id', 'category_id', 'flip')
_FLOAT32 = ('bbox', 'keypoints', 'keypoints_visible', 'dataset_keypoint_weights', 'bbox_score', 'area',
            'shift', 'scale', 'rotation')


def _stack(name: str, values: list[Any], dtype: Any) -> torch.Tensor:
    try:
        return torch.from_numpy(np.stack([np.asarray(v, dtype=dtype) for v in values]))
    except ValueError as e:
        shapes = sorted({np.shape(v) for v in values})
        raise ValueError(f'collate_raw: "{name}" differs in shape across the batch: {shapes}') from e


def collate_raw(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch raw samples (see the module docstring for the layout)."""
    if not samples:
        raise ValueError('collate_raw got an empty batch')
    stages = {s['stage'] for s in samples}
    if len(stages) != 1:
        raise ValueError(f'collate_raw: samples of different pipeline stages {sorted(stages)} in one batch')
    out: dict[str, Any] = {name: _stack(name, [s[name] for s in samples], np.int64) for name in _INT64}
    out.update({name: _stack(name, [s[name] for s in samples], np.float32) for name in _FLOAT32})
    out['half_body'] = _stack('half_body', [s['half_body'] for s in samples], np.bool_)
    out['jpeg'] = [None if s['jpeg'] is None else torch.from_numpy(s['jpeg']) for s in samples]
    out['image'] = [None if s['image'] is None else torch.from_numpy(s['image']) for s in samples]
    out['img_path'] = [s['img_path'] for s in samples]
    out['dataset_name'] = [s['dataset_name'] for s in samples]
    out['photometric'] = [stack_params([s['photometric'][j] for s in samples])
                          for j in range(len(samples[0]['photometric']))]
    out['stage'] = stages.pop()
    return out
