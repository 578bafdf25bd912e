"""Moving a collated batch to the training device: the one place where a batch is prepared for the step."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def prepare_batch(batch: Mapping[str, Any], device: torch.device,
                  channels_last: bool = False) -> dict[str, Any]:
    """``{'inputs': uint8 (B, 3, H, W), 'targets': {name: (B, ...)}}`` on ``device``.

    Copies are ``non_blocking`` (asynchronous from pinned host memory on CUDA: the copy overlaps the
    previous step). ``channels_last`` gives the images the memory layout the CUDA convolutions prefer.
    Normalisation happens later, on the device, in the model's data preprocessor.
    """
    inputs = batch['inputs'].to(device, non_blocking=True)
    if channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    targets = {k: v.to(device, non_blocking=True) for k, v in batch['targets'].items()}
    return {'inputs': inputs, 'targets': targets}
