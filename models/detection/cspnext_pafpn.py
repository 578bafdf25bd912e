"""CSPNeXtPAFPN: the path-aggregation neck of RTMDet (MMDetection 3.3.0 layout)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from models.detection.conv_module import DEFAULT_ACT, conv_3x3_module, conv_module
from models.detection.csp_layer import CSPLayer
from utils.registry import MODELS


@MODELS.register_module()
class CSPNeXtPAFPN(nn.Module):
    """Top-down (reduce 1x1, nearest x2 upsample, CSP) then bottom-up (stride-2 conv, CSP) fusion,
    and a 3x3 output conv per level.

    ``forward(feats: tuple of (B, in_channels[i], H_i, W_i)) -> tuple of (B, out_channels, H_i, W_i)``.
    ``init_cfg`` and ``upsample_cfg`` are accepted for MMDetection config compatibility.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, num_csp_blocks: int = 3,
                 use_depthwise: bool = False, expand_ratio: float = 0.5,
                 upsample_cfg: Mapping | None = None, norm_cfg: Mapping | None = None,
                 act_cfg: Mapping | None = DEFAULT_ACT, init_cfg: Mapping | None = None) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        up = dict(upsample_cfg or {'scale_factor': 2, 'mode': 'nearest'})
        self.upsample = nn.Upsample(**up)
        kw = dict(norm_cfg=norm_cfg, act_cfg=act_cfg)
        csp = dict(num_blocks=num_csp_blocks, add_identity=False, use_depthwise=use_depthwise,
                   expand_ratio=expand_ratio, **kw)
        conv = conv_3x3_module(use_depthwise)
        n = len(self.in_channels)
        ch = self.in_channels
        self.reduce_layers = nn.ModuleList(conv_module(ch[i], ch[i - 1], 1, **kw)
                                           for i in range(n - 1, 0, -1))
        self.top_down_blocks = nn.ModuleList(CSPLayer(ch[i - 1] * 2, ch[i - 1], **csp)
                                             for i in range(n - 1, 0, -1))
        self.downsamples = nn.ModuleList(conv(ch[i], ch[i], 3, 2, 1, **kw) for i in range(n - 1))
        self.bottom_up_blocks = nn.ModuleList(CSPLayer(ch[i] * 2, ch[i + 1], **csp) for i in range(n - 1))
        self.out_convs = nn.ModuleList(conv(ch[i], out_channels, 3, 1, 1, **kw) for i in range(n))

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Backbone maps (B, in_channels[i], H_i, W_i), finest first -> (B, out_channels, H_i, W_i) each."""
        n = len(self.in_channels)
        if len(inputs) != n:
            raise ValueError(f'CSPNeXtPAFPN expects {n} feature maps, got {len(inputs)}')
        inner = [inputs[-1]]
        for j, idx in enumerate(range(n - 1, 0, -1)):
            high = self.reduce_layers[j](inner[0])
            inner[0] = high
            inner.insert(0, self.top_down_blocks[j](torch.cat([self.upsample(high), inputs[idx - 1]], 1)))
        outs = [inner[0]]
        for idx in range(n - 1):
            down = self.downsamples[idx](outs[-1])
            outs.append(self.bottom_up_blocks[idx](torch.cat([down, inner[idx + 1]], 1)))
        return tuple(conv(o) for conv, o in zip(self.out_convs, outs))
