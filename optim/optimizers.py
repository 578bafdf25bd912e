"""torch.optim optimizers in the OPTIMIZERS registry, using fused/foreach kernels where they exist."""
from __future__ import annotations

import inspect

import torch

from utils.registry import OPTIMIZERS

for _name in ('SGD', 'Adam', 'AdamW', 'RMSprop', 'Adagrad', 'Adamax', 'NAdam', 'RAdam'):
    OPTIMIZERS.register_module(name=_name, module=getattr(torch.optim, _name))


def fast_kernel_args(optimizer_cls: type, params_on_cuda: bool, cfg: dict) -> dict:
    """Keyword arguments choosing the fastest kernel of ``optimizer_cls`` the config has not fixed.

    On CUDA a class that accepts ``fused`` gets ``fused=True`` (one kernel for all parameters);
    elsewhere nothing is added and torch picks its default (``foreach`` on CUDA, a loop on CPU).
    A config that sets ``fused`` or ``foreach`` itself is left alone.
    """
    if not params_on_cuda or 'fused' in cfg or 'foreach' in cfg:
        return {}
    if 'fused' in inspect.signature(optimizer_cls).parameters:
        return {'fused': True}
    return {}
