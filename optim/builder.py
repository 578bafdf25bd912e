"""Build the optimizer wrapper from ``cfg.optim_wrapper`` and scale its lr by the batch size."""
from __future__ import annotations

import logging
from typing import Any

from torch import nn

from optim.optim_wrapper import OptimWrapper
from optim.optimizers import fast_kernel_args
from optim.param_groups import build_param_groups
from utils.registry import OPTIM_WRAPPERS, OPTIMIZERS

logger = logging.getLogger('mmpose_clean.optim')


def build_optimizer(model: nn.Module, optim_wrapper_cfg: dict[str, Any]) -> OptimWrapper:
    """Build ``OptimWrapper``/``AmpOptimWrapper`` and its torch optimizer for ``model``'s parameters.

    ``optim_wrapper_cfg``: ``dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=..., ...),
    paramwise_cfg=None, clip_grad=None, accumulative_counts=1)`` (plus ``dtype``/``loss_scale`` for
    AmpOptimWrapper). Without ``paramwise_cfg`` all parameters form one group (as mmengine); with
    it each trainable parameter gets its own group. On CUDA, optimizers that support it run fused.
    Build it after moving the model to its device.
    """
    cfg = dict(optim_wrapper_cfg)
    wrapper_type = cfg.pop('type', 'OptimWrapper')
    wrapper_cls = OPTIM_WRAPPERS.get(wrapper_type)
    if 'optimizer' not in cfg:
        raise KeyError('optim_wrapper has no "optimizer" dict')
    optimizer_cfg = dict(cfg.pop('optimizer'))
    paramwise_cfg = cfg.pop('paramwise_cfg', None)
    cfg.pop('constructor', None)
    model = getattr(model, 'module', model)  # DDP
    if paramwise_cfg:
        params: Any = build_param_groups(model, paramwise_cfg, optimizer_cfg.get('lr'),
                                         optimizer_cfg.get('weight_decay'))
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    on_cuda = any(p.is_cuda for p in model.parameters())
    optimizer_cls = OPTIMIZERS.get(optimizer_cfg['type'])
    optimizer_cfg.update(fast_kernel_args(optimizer_cls, on_cuda, optimizer_cfg))
    optimizer = OPTIMIZERS.build(optimizer_cfg, cfg_path='optim_wrapper.optimizer', params=params)
    return OPTIM_WRAPPERS.build(dict(cfg, type=wrapper_cls), cfg_path='optim_wrapper', optimizer=optimizer)


def scale_lr(optim_wrapper: OptimWrapper, auto_scale_lr: dict[str, Any] | None,
             total_batch_size: int) -> float:
    """Multiply every group's lr by ``total_batch_size / auto_scale_lr.base_batch_size``.

    As mmengine, only when ``auto_scale_lr.enable`` is true (``train.py --auto-scale-lr`` sets it);
    ``total_batch_size`` is the per-GPU batch size times the world size. Call it before building the
    schedulers. Returns the ratio applied (1.0 when disabled).
    """
    if not auto_scale_lr or not auto_scale_lr.get('enable', False):
        return 1.0
    if 'base_batch_size' not in auto_scale_lr:
        raise KeyError('auto_scale_lr has no "base_batch_size"')
    ratio = float(total_batch_size) / float(auto_scale_lr['base_batch_size'])
    logger.info('auto_scale_lr: lr x %g (total batch %d, base %d)', ratio, total_batch_size,
                auto_scale_lr['base_batch_size'])
    for group in optim_wrapper.param_groups:
        group['lr'] = group['lr'] * ratio
    return ratio
