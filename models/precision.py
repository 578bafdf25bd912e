"""Leaving mixed precision for a region: losses, metrics and small heads run in fp32 under autocast."""
from __future__ import annotations

import contextlib

import torch

_AUTOCAST_DEVICE_TYPES = ('cuda', 'cpu')


def autocast_enabled() -> bool:
    """True inside an active autocast region (CUDA or CPU); a plain Python boolean."""
    return any(torch.is_autocast_enabled(device_type) for device_type in _AUTOCAST_DEVICE_TYPES)


def autocast_off() -> contextlib.ExitStack:
    """A context in which every active autocast (CUDA, CPU) is switched off, so that ops run in the dtype of
    their inputs. Outside autocast (plain fp32 runs, the ``meta`` device, FX/ONNX tracing) it does nothing,
    and it decides with plain Python booleans, so traced graphs see the ordinary path."""
    stack = contextlib.ExitStack()
    for device_type in _AUTOCAST_DEVICE_TYPES:
        if torch.is_autocast_enabled(device_type):
            stack.enter_context(torch.autocast(device_type=device_type, enabled=False))
    return stack
