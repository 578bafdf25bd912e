"""MobileNetV2 backbone (Sandler et al. 2018) with one module per op, for tracing and quantisation.

Architecture and parameter count are those of MMPose 1.3.2's ``MobileNetV2``; the parameter names are
those of the original MMPose_Clean project (``conv1.conv``, ``block_{b}.{i}.{conv,bn,dw_conv,dw_bn,
pw_conv,pw_bn}``, ``conv2.conv``), so its checkpoints load directly. MMPose's names
(``layer{b+1}.{i-1}.conv.{k}.{conv,bn}``) convert to these in ``models/checkpoints/naming.py``.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from models.backbones.base import StagedBackbone, run_stages
from models.checkpoints import pretrained_cfg
from models.layers import Add, ConvBNAct, build_activation, make_divisible
from utils.registry import MODELS

# One row per stage: expand ratio, output channels at widen_factor 1, number of blocks, first stride.
ARCH_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                 (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (3x3) -> project (1x1, linear), plus the input when shapes allow.

    Submodules: ``conv``/``bn``/``act`` (the expansion, absent when ``expand_ratio == 1``),
    ``dw_conv``/``dw_bn``/``dw_act``, ``pw_conv``/``pw_bn`` and ``add`` (only with a residual).

    Args:
        in_channels, out_channels: channels of the (B, C, H, W) input and output.
        stride: stride of the depthwise conv (1 or 2).
        expand_ratio: hidden channels = round(in_channels * expand_ratio).
        act: activation config (see ``models.layers``).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int,
                 act: str | Mapping[str, Any] = 'ReLU6') -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f'InvertedResidual stride must be 1 or 2, got {stride}')
        hidden = int(round(in_channels * expand_ratio))
        self.with_expand = expand_ratio != 1
        self.with_residual = stride == 1 and in_channels == out_channels
        if self.with_expand:
            self.conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self.bn = nn.BatchNorm2d(hidden)
            self.act = build_activation(act)
        self.dw_conv = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.dw_bn = nn.BatchNorm2d(hidden)
        self.dw_act = build_activation(act)
        self.pw_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(out_channels)
        if self.with_residual:
            self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H / stride, W / stride)."""
        out = x
        if self.with_expand:
            out = self.act(self.bn(self.conv(out)))
        out = self.dw_act(self.dw_bn(self.dw_conv(out)))
        out = self.pw_bn(self.pw_conv(out))
        if self.with_residual:
            out = self.add(x, out)
        return out


@MODELS.register_module()
class MobileNetV2(StagedBackbone):
    """MobileNetV2 feature extractor.

    Stages, indexed as in ``out_indices``: 0-6 are ``block_0`` ... ``block_6`` (strides 2, 4, 8, 16,
    16, 32, 32 relative to the input), 7 is ``conv2`` (1x1 conv to 1280 channels, or
    ``int(1280 * widen_factor)`` when ``widen_factor > 1``). ``conv1`` (stride 2) precedes them.

    Args:
        widen_factor: channel multiplier (channels rounded with ``make_divisible(c * w, 8)``).
        out_indices: stages whose outputs ``forward`` returns, each in 0..7.
        frozen_stages: -1 freezes nothing; n >= 0 freezes ``conv1`` and ``block_0`` .. ``block_{n-1}``
            (eval mode, no gradients), as MMPose's ``frozen_stages``.
        norm_eval: keep every BatchNorm in eval mode while training (running stats frozen).
        act: activation config for every non-linear layer (default ReLU6).
        init_cfg: None, or ``dict(type='Pretrained', checkpoint=PATH, prefix='backbone.')``. The
            checkpoint is loaded by :meth:`init_weights`, not by the constructor, so that building a
            model for evaluation does not need the pretraining file.
    """

    def __init__(self, widen_factor: float = 1.0, out_indices: Sequence[int] = (7,),
                 frozen_stages: int = -1, norm_eval: bool = False,
                 act: str | Mapping[str, Any] = 'ReLU6',
                 init_cfg: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        num_stages = len(ARCH_SETTINGS) + 1
        for index in out_indices:
            if index not in range(num_stages):
                raise ValueError(f'MobileNetV2 out_indices must be in 0..{num_stages - 1}, got {index}')
        if frozen_stages not in range(-1, num_stages):
            raise ValueError(f'MobileNetV2 frozen_stages must be in -1..{num_stages - 1}, '
                             f'got {frozen_stages}')
        self.widen_factor = widen_factor
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.init_cfg = pretrained_cfg(init_cfg)

        channels = make_divisible(32 * widen_factor, 8)
        self.conv1 = ConvBNAct(3, channels, 3, stride=2, padding=1, act=act)
        self.stage_names: list[str] = []
        for b, (expand_ratio, base_channels, num_blocks, stride) in enumerate(ARCH_SETTINGS):
            out_channels = make_divisible(base_channels * widen_factor, 8)
            blocks = OrderedDict()
            for i in range(num_blocks):
                blocks[str(i + 1)] = InvertedResidual(channels, out_channels, stride if i == 0 else 1,
                                                      expand_ratio, act)
                channels = out_channels
            self.add_module(f'block_{b}', nn.Sequential(blocks))
            self.stage_names.append(f'block_{b}')
        self.out_channels = int(1280 * widen_factor) if widen_factor > 1.0 else 1280
        self.conv2 = ConvBNAct(channels, self.out_channels, 1, act=act)
        self.stage_names.append('conv2')
        self.reset_parameters()
        self._freeze_stages()

    def reset_parameters(self) -> None:
        """MMPose's default init: Kaiming-normal (fan_out, ReLU) convs, BN weight 1 and bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, 3, H, W) -> tuple of the feature maps of ``out_indices``, in stage order."""
        return run_stages(self.conv1(x), [getattr(self, name) for name in self.stage_names], self.out_indices)

    def frozen_modules(self) -> list[nn.Module]:
        """``conv1`` and ``block_0`` .. ``block_{frozen_stages-1}`` (nothing when ``frozen_stages`` is -1)."""
        if self.frozen_stages < 0:
            return []
        return [self.conv1] + [getattr(self, f'block_{b}') for b in range(self.frozen_stages)]

