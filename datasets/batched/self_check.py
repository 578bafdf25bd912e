"""How far a batch of the device pipeline may be from the per-sample pipeline's batch of the same
sample seeds: the bounds of the CPU equivalence tests (tests/test_batched_*.py), checked again on the
user's device on the first batch of a run (:class:`~datasets.batched.device_loader.DeviceBatchLoader`).

- crops: mean absolute difference per crop below :data:`CROP_MEAN_ABS_BOUND` grey levels (OpenCV's
  ``warpAffine`` quantises sampling positions to 1/32 px and bilinear weights to fixed point; the
  batched warp does neither);
- meta (keypoints, boxes, ...): within :data:`META_ATOL` (keypoints within 1e-3 px), lists equal;
- targets: within ``rtol`` :data:`TARGET_RTOL`, ``atol`` :data:`TARGET_ATOL`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

CROP_MEAN_ABS_BOUND = 0.5
META_ATOL = 1e-3
TARGET_RTOL, TARGET_ATOL = 1e-5, 1e-6


def first_samples(batch: Mapping[str, Any], n: int) -> dict[str, Any]:
    """The first ``n`` samples of a collated batch, on the CPU."""
    def cut(value: Any) -> Any:
        return value[:n].cpu() if isinstance(value, torch.Tensor) else list(value[:n])
    return {'inputs': cut(batch['inputs']), 'targets': {k: cut(v) for k, v in batch['targets'].items()},
            'meta': {k: cut(v) for k, v in batch['meta'].items()}}


def _excess(expected: torch.Tensor, got: torch.Tensor, atol: float, rtol: float) -> float | None:
    """The largest absolute difference where ``got`` is outside ``atol + rtol * |expected|``, or None."""
    if got.shape != expected.shape or got.dtype != expected.dtype:
        return float('inf')
    diff = (got.double() - expected.double()).abs()
    outside = diff > atol + rtol * expected.double().abs()
    return float(diff[outside].max()) if bool(outside.any()) else None


def batch_differences(expected: Mapping[str, Any], got: Mapping[str, Any]) -> list[str]:
    """What differs beyond the bounds between two collated CPU batches of the same samples, one line
    each with the measured value; empty when they agree."""
    problems = []
    if got['inputs'].shape != expected['inputs'].shape or got['inputs'].dtype != expected['inputs'].dtype:
        problems.append(f'crops are {tuple(got["inputs"].shape)} {got["inputs"].dtype}, expected '
                        f'{tuple(expected["inputs"].shape)} {expected["inputs"].dtype}')
    else:
        per_crop = (got['inputs'].int() - expected['inputs'].int()).abs().float().mean(dim=(1, 2, 3))
        worst = float(per_crop.max())
        if worst >= CROP_MEAN_ABS_BOUND:
            problems.append(f'crop {int(per_crop.argmax())}: mean absolute difference {worst:.2f} grey '
                            f'levels (bound {CROP_MEAN_ABS_BOUND})')
    for part, atol, rtol in (('targets', TARGET_ATOL, TARGET_RTOL), ('meta', META_ATOL, 0.0)):
        if set(got[part]) != set(expected[part]):
            problems.append(f'{part} keys {sorted(got[part])}, expected {sorted(expected[part])}')
            continue
        for key, value in expected[part].items():
            if isinstance(value, list):
                if list(got[part][key]) != value:
                    problems.append(f'{part} {key!r} differs')
                continue
            excess = _excess(value, got[part][key], atol, rtol)
            if excess is not None:
                problems.append(f'{part} {key!r}: largest difference {excess:.3g} (tolerance {atol:g} + '
                                f'{rtol:g} x value)')
    return problems
