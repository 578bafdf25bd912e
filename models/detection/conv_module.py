"""Conv-BN-activation helpers for RTMDet, on top of :class:`models.layers.ConvBNAct`.

MMDetection's RTMDet modules default to ``BN(momentum=0.03, eps=0.001)`` and SiLU, and name their
tensors ``<module>.conv.weight`` / ``<module>.bn.*`` (MMCV ``ConvModule``); ConvBNAct keeps those
names, so official checkpoints load as they are.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor, nn

from models.layers import ConvBNAct

DEFAULT_NORM = {'type': 'BN', 'momentum': 0.03, 'eps': 0.001}
DEFAULT_ACT = {'type': 'SiLU'}


def conv_module(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                padding: int = 0, groups: int = 1, norm_cfg: Mapping | None = None,
                act_cfg: Mapping | None = DEFAULT_ACT) -> ConvBNAct:
    """MMCV-style ``ConvModule``: bias-free conv -> BN (``norm_cfg``, RTMDet default) -> ``act_cfg``."""
    return ConvBNAct(in_channels, out_channels, kernel_size, stride, padding, groups=groups,
                     norm=dict(norm_cfg or DEFAULT_NORM), act=act_cfg)


class DepthwiseSeparableConvModule(nn.Module):
    """Depthwise k x k conv module (``depthwise_conv``) then a pointwise 1x1 one (``pointwise_conv``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, norm_cfg: Mapping | None = None,
                 act_cfg: Mapping | None = DEFAULT_ACT) -> None:
        super().__init__()
        self.depthwise_conv = conv_module(in_channels, in_channels, kernel_size, stride, padding,
                                          groups=in_channels, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.pointwise_conv = conv_module(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H / stride, W / stride)."""
        return self.pointwise_conv(self.depthwise_conv(x))


def conv_3x3_module(use_depthwise: bool) -> Callable[..., nn.Module]:
    """The block MMDetection picks with ``use_depthwise``: depthwise-separable or plain conv module."""
    return DepthwiseSeparableConvModule if use_depthwise else conv_module
