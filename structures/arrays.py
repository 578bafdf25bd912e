"""Conversions between torch tensors and numpy arrays, for models, metrics and deployment."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_numpy(value: Any) -> np.ndarray:
    """A tensor (any device; detached and copied to the CPU) or any array-like as a numpy array, with
    its shape and dtype unchanged."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)
