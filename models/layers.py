"""Small building blocks shared by backbones, necks and the detector.

Every operation is its own module (convolution, normalisation, activation, residual add), so
``torch.fx.symbolic_trace`` and quantisation tools see each op as a named node.

Config conventions (subset of MMCV's): ``norm`` is ``None`` or ``dict(type='BN', momentum=0.1,
eps=1e-5)`` (``'SyncBN'`` builds a plain ``BatchNorm2d``; convert it for distributed training with
``nn.SyncBatchNorm.convert_sync_batchnorm``); ``act`` is ``None``, a name such as ``'ReLU'``, or
``dict(type='SiLU', inplace=True)``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    'ReLU': nn.ReLU,
    'ReLU6': nn.ReLU6,
    'LeakyReLU': nn.LeakyReLU,
    'SiLU': nn.SiLU,
    'Swish': nn.SiLU,
    'GELU': nn.GELU,
    'Hardswish': nn.Hardswish,
    'HSwish': nn.Hardswish,
    'Hardsigmoid': nn.Hardsigmoid,
    'Sigmoid': nn.Sigmoid,
    'Tanh': nn.Tanh,
}
_INPLACE_ACTIVATIONS = {nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid}
_BATCH_NORMS = ('BN', 'BN2d', 'SyncBN')


def make_divisible(value: float, divisor: int, min_value: int | None = None,
                   min_ratio: float = 0.9) -> int:
    """Round a channel count to the nearest multiple of ``divisor`` (as MMPose/MMCV do).

    The result is at least ``min_value`` (default ``divisor``) and never more than
    ``1 - min_ratio`` below ``value`` (it is bumped up by one ``divisor`` otherwise).
    """
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < min_ratio * value:
        rounded += divisor
    return rounded


def _split_cfg(cfg: str | Mapping[str, Any], what: str) -> tuple[str, dict[str, Any]]:
    if isinstance(cfg, str):
        return cfg, {}
    if isinstance(cfg, Mapping) and isinstance(cfg.get('type'), str):
        kwargs = dict(cfg)
        return kwargs.pop('type'), kwargs
    raise TypeError(f'{what} config must be a name or a dict with a "type" name, got {cfg!r}')


def build_activation(act: str | Mapping[str, Any] | None, inplace: bool = True) -> nn.Module | None:
    """Activation module from a name or ``dict(type=NAME, **kwargs)``; ``None`` gives ``None``.

    ``inplace`` is the default for activations that support it (a dict's own ``inplace`` wins).
    """
    if act is None:
        return None
    name, kwargs = _split_cfg(act, 'activation')
    if name not in _ACTIVATIONS:
        raise KeyError(f'unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}')
    cls = _ACTIVATIONS[name]
    if cls in _INPLACE_ACTIVATIONS:
        kwargs.setdefault('inplace', inplace)
    return cls(**kwargs)


def build_norm(norm: str | Mapping[str, Any], num_features: int) -> nn.Module:
    """Normalisation module for ``num_features`` channels: ``BN``/``SyncBN`` (BatchNorm2d), ``GN``, ``LN``.

    ``GN`` needs ``num_groups``; BN accepts ``momentum``, ``eps``, ``affine``; ``requires_grad=False``
    freezes the affine parameters.
    """
    name, kwargs = _split_cfg(norm, 'norm')
    requires_grad = kwargs.pop('requires_grad', True)
    if name in _BATCH_NORMS:
        layer: nn.Module = nn.BatchNorm2d(num_features, **kwargs)
    elif name == 'GN':
        if 'num_groups' not in kwargs:
            raise KeyError(f'GN norm config needs "num_groups", got {dict(norm)!r}')
        layer = nn.GroupNorm(num_channels=num_features, **kwargs)
    elif name == 'LN':
        layer = nn.LayerNorm(num_features, **kwargs)
    else:
        raise KeyError(f'unknown norm {name!r}; expected one of {[*_BATCH_NORMS, "GN", "LN"]}')
    for param in layer.parameters():
        param.requires_grad = requires_grad
    return layer


class Add(nn.Module):
    """Element-wise ``a + b`` as a module, so residual adds are named nodes for fx and quantisers."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class ConvBNAct(nn.Module):
    """``Conv2d`` -> norm -> activation, with submodules ``conv``, ``bn`` and ``act``.

    The parameter names (``conv.weight``, ``bn.weight``, ...) match MMCV's ``ConvModule`` with BN, so
    state dicts of both load into each other. ``bn``/``act`` are absent when ``norm``/``act`` is None.

    Args:
        in_channels, out_channels: channel counts of the (B, C, H, W) input and output.
        kernel_size, stride, dilation, groups: as ``nn.Conv2d``.
        padding: ``None`` gives "same"-style ``dilation * (kernel_size - 1) // 2``.
        bias: ``'auto'`` adds a conv bias only when there is no norm layer.
        norm: norm config (see the module docstring) or None.
        act: activation config or None.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 padding: int | None = None, dilation: int = 1, groups: int = 1,
                 bias: bool | str = 'auto', norm: str | Mapping[str, Any] | None = 'BN',
                 act: str | Mapping[str, Any] | None = 'ReLU') -> None:
        super().__init__()
        if padding is None:
            padding = dilation * (kernel_size - 1) // 2
        if bias == 'auto':
            bias = norm is None
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation,
                              groups, bias=bool(bias))
        if norm is not None:
            self.bn = build_norm(norm, out_channels)
        activation = build_activation(act)
        if activation is not None:
            self.act = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H', W')."""
        x = self.conv(x)
        if hasattr(self, 'bn'):
            x = self.bn(x)
        if hasattr(self, 'act'):
            x = self.act(x)
        return x


def set_norm_eval(module: nn.Module) -> None:
    """Put every batch-norm layer inside ``module`` in eval mode (running statistics frozen)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def freeze(module: nn.Module) -> None:
    """Eval mode and ``requires_grad=False`` for every parameter of ``module``."""
    module.eval()
    for param in module.parameters():
        param.requires_grad = False
