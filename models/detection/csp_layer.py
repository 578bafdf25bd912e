"""Cross Stage Partial building blocks of CSPNeXt and its PAFPN (RTMDet, MMDetection 3.3.0)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from models.detection.conv_module import (
    DEFAULT_ACT,
    DepthwiseSeparableConvModule,
    conv_3x3_module,
    conv_module,
)


class CSPNeXtBlock(nn.Module):
    """3x3 conv then depthwise-separable 5x5 conv, with a residual when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, expansion: float = 0.5,
                 add_identity: bool = True, use_depthwise: bool = False, kernel_size: int = 5,
                 norm_cfg: Mapping | None = None, act_cfg: Mapping | None = DEFAULT_ACT) -> None:
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = conv_3x3_module(use_depthwise)(in_channels, hidden, 3, 1, 1, norm_cfg=norm_cfg,
                                               act_cfg=act_cfg)
        self.conv2 = DepthwiseSeparableConvModule(hidden, out_channels, kernel_size, 1, kernel_size // 2,
                                                  norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.add_identity = add_identity and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W), plus ``x`` when ``add_identity``."""
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class ChannelAttention(nn.Module):
    """Squeeze-excite style gate: x * hardsigmoid(fc(mean over H, W))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, channels, 1, 1, 0, bias=True)
        self.act = nn.Hardsigmoid()

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) scaled per channel by a gate in [0, 1] from its global average."""
        return x * self.act(self.fc(self.global_avgpool(x)))


class CSPLayer(nn.Module):
    """Split into a main path (1x1 conv + CSPNeXt blocks) and a shortcut (1x1 conv), concatenate
    (optionally gated by channel attention) and fuse with a 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: float = 0.5,
                 num_blocks: int = 1, add_identity: bool = True, use_depthwise: bool = False,
                 channel_attention: bool = False, norm_cfg: Mapping | None = None,
                 act_cfg: Mapping | None = DEFAULT_ACT) -> None:
        super().__init__()
        mid = int(out_channels * expand_ratio)
        self.channel_attention = channel_attention
        self.main_conv = conv_module(in_channels, mid, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.short_conv = conv_module(in_channels, mid, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.final_conv = conv_module(2 * mid, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.blocks = nn.Sequential(*[
            CSPNeXtBlock(mid, mid, 1.0, add_identity, use_depthwise, norm_cfg=norm_cfg, act_cfg=act_cfg)
            for _ in range(num_blocks)])
        if channel_attention:
            self.attention = ChannelAttention(2 * mid)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        out = torch.cat((self.blocks(self.main_conv(x)), self.short_conv(x)), dim=1)
        if self.channel_attention:
            out = self.attention(out)
        return self.final_conv(out)


class SPPBottleneck(nn.Module):
    """Spatial pyramid pooling: 1x1 conv, concat with stride-1 max pools of several sizes, 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: Sequence[int] = (5, 9, 13),
                 norm_cfg: Mapping | None = None, act_cfg: Mapping | None = DEFAULT_ACT) -> None:
        super().__init__()
        mid = in_channels // 2
        self.conv1 = conv_module(in_channels, mid, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.poolings = nn.ModuleList([nn.MaxPool2d(k, 1, k // 2) for k in kernel_sizes])
        self.conv2 = conv_module(mid * (len(kernel_sizes) + 1), out_channels, 1, norm_cfg=norm_cfg,
                                act_cfg=act_cfg)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W): the map and its max-pools at each kernel size, fused."""
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.poolings], dim=1))
