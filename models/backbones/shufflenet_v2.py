"""ShuffleNetV2 backbone (Ma et al. 2018); parameter names and count as MMPose 1.3.2's ``ShuffleNetV2``."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from models.backbones.base import StagedBackbone, run_stages
from models.checkpoints import pretrained_cfg
from models.layers import ConvBNAct
from utils.registry import MODELS

# Output channels of the three shuffle stages and the final 1x1 conv, per widen factor.
STAGE_CHANNELS = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024), 1.5: (176, 352, 704, 1024),
                  2.0: (244, 488, 976, 2048)}
STAGE_BLOCKS = (4, 8, 4)


class ChannelShuffle(nn.Module):
    """Interleave the channels of ``groups`` equal groups: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W) with channels interleaved across the ``groups``."""
        b, c, h, w = x.shape
        return x.reshape(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: with stride 2 both branches see the whole input (``branch1``: depthwise 3x3 +
    1x1; ``branch2``: 1x1 + depthwise 3x3 + 1x1); with stride 1 half the channels pass through unchanged
    and ``branch2`` processes the other half. The halves are concatenated then channel-shuffled.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 act: str | Mapping[str, Any] = 'ReLU') -> None:
        super().__init__()
        branch = out_channels // 2
        if stride == 1 and in_channels != 2 * branch:
            raise ValueError(f'ShuffleUnit with stride 1 needs in_channels == out_channels, '
                             f'got {in_channels} -> {out_channels}')
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(
                ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels, act=None),
                ConvBNAct(in_channels, branch, 1, act=act))
        branch2_in = in_channels if stride > 1 else branch
        self.branch2 = nn.Sequential(
            ConvBNAct(branch2_in, branch, 1, act=act),
            ConvBNAct(branch, branch, 3, stride, groups=branch, act=None),
            ConvBNAct(branch, branch, 1, act=act))
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H / stride, W / stride)."""
        if self.stride > 1:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        else:
            kept, processed = x.chunk(2, dim=1)
            out = torch.cat((kept, self.branch2(processed)), dim=1)
        return self.shuffle(out)


@MODELS.register_module()
class ShuffleNetV2(StagedBackbone):
    """ShuffleNetV2 feature extractor.

    ``conv1`` (3x3, stride 2, 24 channels) and a 3x3/2 max-pool, then ``layers.0``-``layers.2`` (shuffle
    stages, strides 8, 16, 32) and ``layers.3`` (1x1 conv); ``out_indices`` pick from these 4.

    Args:
        widen_factor: one of 0.5, 1.0, 1.5, 2.0 (see ``STAGE_CHANNELS``).
        out_indices: stages whose outputs ``forward`` returns, each in 0..3.
        frozen_stages: -1 freezes nothing; n >= 0 freezes ``conv1`` and ``layers.0`` .. ``layers.{n-1}``.
        norm_eval: keep every BatchNorm in eval mode while training.
        act: activation config (default ReLU).
        init_cfg: None or ``dict(type='Pretrained', checkpoint=PATH, prefix='backbone.')``, loaded by
            :meth:`init_weights`.
    """

    def __init__(self, widen_factor: float = 1.0, out_indices: Sequence[int] = (3,),
                 frozen_stages: int = -1, norm_eval: bool = False,
                 act: str | Mapping[str, Any] = 'ReLU',
                 init_cfg: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if widen_factor not in STAGE_CHANNELS:
            raise ValueError(f'ShuffleNetV2 widen_factor must be one of {sorted(STAGE_CHANNELS)}, '
                             f'got {widen_factor}')
        for index in out_indices:
            if index not in range(4):
                raise ValueError(f'ShuffleNetV2 out_indices must be in 0..3, got {index}')
        if frozen_stages not in range(-1, 4):
            raise ValueError(f'ShuffleNetV2 frozen_stages must be in -1..3, got {frozen_stages}')
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.init_cfg = pretrained_cfg(init_cfg)

        channels = STAGE_CHANNELS[widen_factor]
        in_channels = 24
        self.conv1 = ConvBNAct(3, in_channels, 3, stride=2, act=act)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layers = nn.ModuleList()
        for out_channels, num_blocks in zip(channels, STAGE_BLOCKS):
            units = [ShuffleUnit(in_channels if i == 0 else out_channels, out_channels, 2 if i == 0 else 1,
                                 act) for i in range(num_blocks)]
            self.layers.append(nn.Sequential(*units))
            in_channels = out_channels
        self.layers.append(ConvBNAct(in_channels, channels[-1], 1, act=act))
        self.out_channels = channels[-1]
        self.reset_parameters()
        self._freeze_stages()

    def reset_parameters(self) -> None:
        """MMPose's default init: conv weights N(0, 1 / fan_in_channels) (``conv1``: N(0, 0.01)),
        BN weight 1 and bias 1e-4."""
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d):
                std = 0.01 if name.startswith('conv1') else 1.0 / m.weight.shape[1]
                nn.init.normal_(m.weight, 0.0, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.constant_(m.bias, 1e-4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, 3, H, W) -> tuple of the feature maps of ``out_indices``."""
        return run_stages(self.maxpool(self.conv1(x)), self.layers, self.out_indices)

    def frozen_modules(self) -> list[nn.Module]:
        """``conv1`` and ``layers[0]`` .. ``layers[frozen_stages-1]``; none when ``frozen_stages`` is -1."""
        if self.frozen_stages < 0:
            return []
        return [self.conv1] + list(self.layers[:self.frozen_stages])
