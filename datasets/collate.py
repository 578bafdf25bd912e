"""pose_collate: stack packed samples into one batch (the data contract's batch layout)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from datasets.transforms.formatting import INT_META_KEYS


def _stack_meta(name: str, values: list[Any]) -> torch.Tensor | list[str]:
    if isinstance(values[0], str) or values[0] is None:
        return [v if v is not None else '' for v in values]
    dtype = np.int64 if name in INT_META_KEYS else np.float32
    try:
        return torch.from_numpy(np.stack([np.asarray(v, dtype=dtype) for v in values]))
    except ValueError as e:
        shapes = sorted({np.shape(v) for v in values})
        raise ValueError(f'pose_collate: meta "{name}" differs in shape across the batch: {shapes}') from e


def pose_collate(samples: Sequence[dict]) -> dict[str, Any]:
    """Batch samples from ``PackPoseInputs``.

    Returns ``{'inputs': uint8 (B, 3, H, W), 'targets': {name: (B, ...) float32}, 'meta': {name:
    (B, ...) tensor (img_id, id, category_id, flip_indices int64; others float32) or list[str]}}``.
    """
    if not samples:
        raise ValueError('pose_collate got an empty batch')
    target_keys = set(samples[0]['targets'])
    for s in samples[1:]:
        if set(s['targets']) != target_keys:
            raise ValueError(f'pose_collate: samples carry different targets: {sorted(target_keys)} vs '
                             f'{sorted(s["targets"])}')
    return {
        'inputs': torch.stack([s['inputs'] for s in samples]),
        'targets': {k: torch.stack([s['targets'][k] for s in samples]) for k in sorted(target_keys)},
        'meta': {k: _stack_meta(k, [s['meta'][k] for s in samples]) for k in samples[0]['meta']},
    }
