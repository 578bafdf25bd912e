"""Exponential moving averages of model weights (mmengine/mmpose EMAHook models), from a config's ``ema``."""
from __future__ import annotations

import copy
import logging
import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from utils.registry import EMA_MODELS

logger = logging.getLogger('mmpose_clean.optim')


@dataclass
class _TensorLists:
    """What one EMA update reads and writes: the averaged tensors and their sources in the model
    (``float_*``: the floating-point ones, the others are only copied on the first update), and the
    buffers copied at every update (without ``update_buffers``)."""
    model: weakref.ref
    avgs: list[torch.Tensor]
    sources: list[torch.Tensor]
    float_avgs: list[torch.Tensor]
    float_sources: list[torch.Tensor]
    buffers: list[torch.Tensor]
    buffer_sources: list[torch.Tensor]

    @classmethod
    def build(cls, averaged: nn.Module, model: nn.Module, update_buffers: bool) -> _TensorLists:
        """Parameters (and with ``update_buffers`` the state dict's buffers) of ``averaged`` paired by name
        with ``model``'s; a tensor that several names share (e.g. QAT's ``network.*`` / ``head.*``) once."""
        if update_buffers:
            avg_named, source_named = averaged.state_dict(keep_vars=True), model.state_dict(keep_vars=True)
        else:
            avg_named, source_named = dict(averaged.named_parameters()), dict(model.named_parameters())
        pairs = {id(avg): (avg, source_named[name]) for name, avg in avg_named.items()}
        avgs, sources = [a for a, _ in pairs.values()], [s for _, s in pairs.values()]
        floating = [i for i, avg in enumerate(avgs) if avg.dtype.is_floating_point]
        buffers = ([], []) if update_buffers else (list(averaged.buffers()), list(model.buffers()))
        return cls(weakref.ref(model), avgs, sources, [avgs[i] for i in floating],
                   [sources[i] for i in floating], *buffers)


@EMA_MODELS.register_module()
class ExponentialMovingAverage:
    """A frozen copy of ``model`` whose weights follow ``avg = (1 - m) * avg + m * weights``.

    Args:
        model: the model being trained (unwrapped from DDP).
        momentum: weight ``m`` of the newest weights.
        interval: average every ``interval`` updates (the others only count).
        update_buffers: also average floating-point buffers (BN running stats); otherwise buffers
            are copied from the model at every update. Integer buffers keep their first value.
    """

    def __init__(self, model: nn.Module, momentum: float = 0.0002, interval: int = 1,
                 update_buffers: bool = False) -> None:
        if not 0.0 < momentum < 1.0:
            raise ValueError(f'EMA momentum must lie in (0, 1), got {momentum}')
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.momentum, self.interval, self.update_buffers = momentum, interval, update_buffers
        self.steps = 0
        self._lists: _TensorLists | None = None

    def _tensor_lists(self, model: nn.Module) -> _TensorLists:
        """The tensors to update and their sources in ``model``, built on the first update and kept: a
        module's parameters and buffers stay the same objects while it trains (optimizers, BN and
        ``load_state_dict`` update them in place). Rebuilt when called with another model."""
        lists = self._lists
        if lists is None or lists.model() is not model:
            lists = self._lists = _TensorLists.build(self.module, model, self.update_buffers)
        return lists

    def average_(self, avgs: list[torch.Tensor], sources: list[torch.Tensor], steps: int) -> None:
        """In place, all at once (foreach kernels): move each of ``avgs`` towards its ``sources``;
        ``steps`` updates have already happened."""
        torch._foreach_lerp_(avgs, sources, self.momentum)

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` into the average (call after each optimizer step). A few
        multi-tensor kernels, whatever the number of tensors; nothing is read back to the host."""
        lists = self._tensor_lists(model)
        if self.steps == 0:
            torch._foreach_copy_(lists.avgs, lists.sources)
        elif self.steps % self.interval == 0:
            self.average_(lists.float_avgs, lists.float_sources, self.steps)
        if lists.buffers:
            torch._foreach_copy_(lists.buffers, lists.buffer_sources)
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {'module': self.module.state_dict(), 'steps': self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state['module'])  # in place: the tensor lists stay valid
        self.steps = int(state['steps'])


@EMA_MODELS.register_module()
class ExpMomentumEMA(ExponentialMovingAverage):
    """EMA whose momentum decays from ~1 to ``momentum``: ``(1 - momentum) * exp(-(1 + steps) /
    gamma) + momentum`` (YOLOX / RTMPose's EMAHook ``ema_type='ExpMomentumEMA'``)."""

    def __init__(self, model: nn.Module, momentum: float = 0.0002, gamma: int = 2000, interval: int = 1,
                 update_buffers: bool = False) -> None:
        if gamma <= 0:
            raise ValueError(f'ExpMomentumEMA gamma must be positive, got {gamma}')
        super().__init__(model, momentum, interval, update_buffers)
        self.gamma = gamma

    def average_(self, avgs: list[torch.Tensor], sources: list[torch.Tensor], steps: int) -> None:
        m = (1 - self.momentum) * math.exp(-float(1 + steps) / self.gamma) + self.momentum
        torch._foreach_mul_(avgs, 1 - m)
        torch._foreach_add_(avgs, sources, alpha=m)


EMA_HOOK_IGNORED = ('type', 'ema_type', 'priority', 'strict_load')


def ema_config(cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """The EMA a config asks for, as an :data:`~utils.registry.EMA_MODELS` config; None for none.

    The entry is ``ema = dict(type='ExpMomentumEMA', momentum=0.0002, gamma=2000, update_buffers=True)``
    (``type`` defaults to ``'ExponentialMovingAverage'``). MMPose's form, ``custom_hooks =
    [dict(type='EMAHook', ema_type=..., momentum=..., priority=...)]``, is converted here; other hooks are
    ignored with a warning (a config file's ``PipelineSwitchHook`` never gets here: loading the file turns
    it into ``stage2_num_epochs`` + ``pipeline_stage2``, ``utils/config_stage2.py``), and a config with
    both forms is an error.
    """
    hooks = list(cfg.get('custom_hooks') or [])
    for hook in hooks:
        if hook.get('type') != 'EMAHook':
            logger.warning(
                'custom_hooks: %s is ignored: this project runs no hooks (an EMAHook sets the EMA; a '
                "config file's PipelineSwitchHook becomes stage2_num_epochs + pipeline_stage2 when it loads)",
                hook.get('type'))
    ema_hooks = [h for h in hooks if h.get('type') == 'EMAHook']
    if cfg.get('ema') is not None and ema_hooks:
        raise ValueError('the config sets both ema and custom_hooks EMAHook; keep one')
    if len(ema_hooks) > 1:
        raise ValueError(f'custom_hooks has {len(ema_hooks)} EMAHook entries; expected at most one')
    if cfg.get('ema') is not None:
        return {'type': 'ExponentialMovingAverage', **cfg['ema']}
    if not ema_hooks:
        return None
    hook = ema_hooks[0]
    if hook.get('begin_iter', 0) or hook.get('begin_epoch', 0):
        raise ValueError('custom_hooks EMAHook: begin_iter / begin_epoch are not supported')
    args = {k: v for k, v in hook.items() if k not in (*EMA_HOOK_IGNORED, 'begin_iter', 'begin_epoch')}
    return {'type': hook.get('ema_type', 'ExponentialMovingAverage'), **args}


def build_ema(model: nn.Module, ema_cfg: Mapping[str, Any] | None) -> ExponentialMovingAverage | None:
    """The EMA of ``model`` described by ``ema_cfg`` (see :func:`ema_config`); None when it is None."""
    if ema_cfg is None:
        return None
    return EMA_MODELS.build(ema_cfg, cfg_path='ema', model=model)
