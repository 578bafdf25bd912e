"""CSPNeXt backbone of RTMDet (MMDetection 3.3.0 layout: ``stem``, ``stage1`` .. ``stage4``)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from models.backbones.base import run_stages
from models.detection.conv_module import DEFAULT_ACT, conv_3x3_module, conv_module
from models.detection.csp_layer import CSPLayer, SPPBottleneck
from utils.registry import MODELS

# per stage: in channels, out channels, CSP blocks, residual in blocks, SPP before the CSP layer
_ARCHS = {
    'P5': [(64, 128, 3, True, False), (128, 256, 6, True, False), (256, 512, 6, True, False),
           (512, 1024, 3, False, True)],
    'P6': [(64, 128, 3, True, False), (128, 256, 6, True, False), (256, 512, 6, True, False),
           (512, 768, 3, True, False), (768, 1024, 3, False, True)],
}


@MODELS.register_module()
class CSPNeXt(nn.Module):
    """CSPNeXt: a 3-conv stem (stride 2) then stages of [stride-2 conv, (SPP), CSPLayer].

    Args:
        arch: 'P5' (strides 8/16/32 outputs) or 'P6'.
        deepen_factor / widen_factor: block-count and channel multipliers (tiny: 0.167 / 0.375).
        out_indices: which of (stem, stage1, ...) to return; (2, 3, 4) gives strides 8, 16, 32.
        init_cfg: accepted for MMDetection config compatibility; weights come from the checkpoint.

    ``forward(x (B, 3, H, W)) -> tuple of (B, C_i, H / s_i, W / s_i)``.
    """

    def __init__(self, arch: str = 'P5', deepen_factor: float = 1.0, widen_factor: float = 1.0,
                 out_indices: Sequence[int] = (2, 3, 4), use_depthwise: bool = False,
                 expand_ratio: float = 0.5, spp_kernel_sizes: Sequence[int] = (5, 9, 13),
                 channel_attention: bool = True, norm_cfg: Mapping | None = None,
                 act_cfg: Mapping | None = DEFAULT_ACT, init_cfg: Mapping | None = None) -> None:
        super().__init__()
        if arch not in _ARCHS:
            raise ValueError(f'CSPNeXt arch {arch!r} is unknown; expected one of {sorted(_ARCHS)}')
        setting = _ARCHS[arch]
        if not set(out_indices) <= set(range(len(setting) + 1)):
            raise ValueError(f'CSPNeXt out_indices {tuple(out_indices)} must lie in 0..{len(setting)}')
        self.out_indices = tuple(out_indices)
        stem = int(setting[0][0] * widen_factor)
        kw = dict(norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.stem = nn.Sequential(conv_module(3, stem // 2, 3, 2, 1, **kw),
                                  conv_module(stem // 2, stem // 2, 3, 1, 1, **kw),
                                  conv_module(stem // 2, stem, 3, 1, 1, **kw))
        self.layers = ['stem']
        for i, (c_in, c_out, blocks, add_identity, use_spp) in enumerate(setting):
            c_in, c_out = int(c_in * widen_factor), int(c_out * widen_factor)
            stage = [conv_3x3_module(use_depthwise)(c_in, c_out, 3, 2, 1, **kw)]
            if use_spp:
                stage.append(SPPBottleneck(c_out, c_out, spp_kernel_sizes, **kw))
            stage.append(CSPLayer(c_out, c_out, expand_ratio, max(round(blocks * deepen_factor), 1),
                                  add_identity, use_depthwise, channel_attention, **kw))
            self.add_module(f'stage{i + 1}', nn.Sequential(*stage))
            self.layers.append(f'stage{i + 1}')

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """(B, 3, H, W) -> tuple of the feature maps of ``out_indices`` (0: stem, i: stage i), in order."""
        return run_stages(x, [getattr(self, name) for name in self.layers], self.out_indices)
