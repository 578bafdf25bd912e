"""Top-down heatmap head (SimpleBaseline, Xiao et al. 2018): deconvolutions, optional convs, final conv.

MMPose 1.3.2 layer names (``deconv_layers``, ``conv_layers``, ``final_layer``) and init; decoded with
``MSRAHeatmap`` or ``UDPHeatmap``. Also used inside :class:`models.heads.simcc_head.SimCCHead`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from codec.msra_heatmap import MSRAHeatmap
from models.heads.regression_head import build_decoder, last_feature
from models.losses.accuracy import constant_norm, keypoint_pck_accuracy
from models.precision import autocast_off
from structures.flip import flip_heatmaps
from utils.registry import MODELS

_DECONV_PADDING = {4: (1, 0), 3: (1, 1), 2: (0, 0)}  # kernel -> (padding, output_padding) for stride 2
DEFAULT_FINAL_LAYER = dict(kernel_size=1)  # read-only default of ``final_layer``


def heatmap_maximum(heatmaps: Tensor) -> tuple[Tensor, Tensor]:
    """Argmax of each map: (B, K, H, W) -> locations (B, K, 2) as float (x, y) heatmap px and values (B, K);
    maps whose maximum is <= 0 get location (-1, -1) (MMPose's convention)."""
    b, k, h, w = heatmaps.shape
    vals, idx = heatmaps.reshape(b, k, h * w).max(dim=-1)
    locs = torch.stack([idx % w, torch.div(idx, w, rounding_mode='floor')], dim=-1).float()
    locs = torch.where((vals <= 0)[..., None], torch.full_like(locs, -1.0), locs)
    return locs, vals


def refine_quarter_offset(locs: Tensor, heatmaps: Tensor) -> Tensor:
    """Move each argmax 0.25 px towards its higher neighbour, per axis (MMPose ``refine_keypoints``).

    Args:
        locs: (B, K, 2) integer-valued argmax locations (x, y), -1 for empty maps.
        heatmaps: (B, K, H, W).
    """
    _, _, h, w = heatmaps.shape
    x, y = locs[..., 0].long(), locs[..., 1].long()

    def value(xx: Tensor, yy: Tensor) -> Tensor:
        flat = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).unsqueeze(-1)
        return heatmaps.flatten(2).gather(2, flat).squeeze(-1)

    dx = torch.where((x > 1) & (x < w - 1) & (y > 0) & (y < h), value(x + 1, y) - value(x - 1, y), 0.0)
    dy = torch.where((y > 1) & (y < h - 1) & (x > 0) & (x < w), value(x, y + 1) - value(x, y - 1), 0.0)
    return locs + torch.stack([dx, dy], dim=-1).sign() * 0.25


def make_deconv_layers(in_channels: int, out_channels: Sequence[int],
                       kernel_sizes: Sequence[int]) -> nn.Sequential:
    """Stride-2 ConvTranspose2d (no bias) + BN + ReLU per entry."""
    layers: list[nn.Module] = []
    for channels, kernel in zip(out_channels, kernel_sizes):
        if kernel not in _DECONV_PADDING:
            raise ValueError(f'deconv_kernel_sizes entries must be 2, 3 or 4, got {kernel}')
        padding, output_padding = _DECONV_PADDING[kernel]
        layers += [nn.ConvTranspose2d(in_channels, channels, kernel, stride=2, padding=padding,
                                      output_padding=output_padding, bias=False),
                   nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        in_channels = channels
    return nn.Sequential(*layers)


def make_conv_layers(in_channels: int, out_channels: Sequence[int],
                     kernel_sizes: Sequence[int]) -> nn.Sequential:
    """'Same'-padded Conv2d + BN + ReLU per entry."""
    layers: list[nn.Module] = []
    for channels, kernel in zip(out_channels, kernel_sizes):
        layers += [nn.Conv2d(in_channels, channels, kernel, stride=1, padding=(kernel - 1) // 2),
                   nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        in_channels = channels
    return nn.Sequential(*layers)


def _check_lengths(name: str, channels: Sequence[int] | None, kernels: Sequence[int] | None) -> None:
    if channels and (kernels is None or len(channels) != len(kernels)):
        raise ValueError(f'"{name}_out_channels" and "{name}_kernel_sizes" must be sequences of the same '
                         f'length, got {channels} and {kernels}')


def init_conv_bn(module: nn.Module, conv_std: float = 0.001) -> None:
    """MMPose head init: Normal(0, ``conv_std``) conv / deconv weights, zero biases, BN weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, conv_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@MODELS.register_module()
class HeatmapHead(nn.Module):
    """Heatmaps (B, K, H, W) from the last backbone feature map.

    Args:
        in_channels: channels of the input feature map.
        out_channels: number of heatmaps K.
        deconv_out_channels / deconv_kernel_sizes: stride-2 deconvolution layers (None or () for none).
        conv_out_channels / conv_kernel_sizes: optional conv layers after the deconvolutions.
        final_layer: kwargs of the final Conv2d (default 1x1), or None for no final layer.
        loss: loss config (default ``KeypointMSELoss(use_target_weight=True)``).
        decoder: heatmap codec config (``MSRAHeatmap`` or ``UDPHeatmap``).
        init_cfg: unused; accepted for MMPose config compatibility.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 deconv_out_channels: Sequence[int] | None = (256, 256, 256),
                 deconv_kernel_sizes: Sequence[int] | None = (4, 4, 4),
                 conv_out_channels: Sequence[int] | None = None,
                 conv_kernel_sizes: Sequence[int] | None = None,
                 final_layer: dict | None = DEFAULT_FINAL_LAYER, loss: dict | None = None,
                 decoder: dict | None = None, init_cfg: Any = None) -> None:
        super().__init__()
        _check_lengths('deconv', deconv_out_channels, deconv_kernel_sizes)
        _check_lengths('conv', conv_out_channels, conv_kernel_sizes)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.loss_module = MODELS.build(loss or dict(type='KeypointMSELoss', use_target_weight=True))
        self.decoder = build_decoder(decoder)
        self.deconv_layers: nn.Module = nn.Identity()
        if deconv_out_channels:
            self.deconv_layers = make_deconv_layers(in_channels, deconv_out_channels, deconv_kernel_sizes)
            in_channels = deconv_out_channels[-1]
        self.conv_layers: nn.Module = nn.Identity()
        if conv_out_channels:
            self.conv_layers = make_conv_layers(in_channels, conv_out_channels, conv_kernel_sizes)
            in_channels = conv_out_channels[-1]
        self.final_layer: nn.Module = nn.Identity()
        if final_layer is not None:
            self.final_layer = nn.Conv2d(in_channels, out_channels, **{'kernel_size': 1, **final_layer})

    def init_weights(self) -> None:
        """MMPose default: conv/deconv Normal(0, 0.001), BN weight 1 / bias 0."""
        init_conv_bn(self)

    def forward(self, feats: Tensor | Sequence[Tensor]) -> Tensor:
        """Last feature map (B, C, h, w) -> heatmaps (B, K, H, W)."""
        return self.final_layer(self.conv_layers(self.deconv_layers(last_feature(feats))))

    def loss(self, outputs: Tensor, targets: dict[str, Tensor],
             train_cfg: dict | None = None) -> dict[str, Tensor]:
        """``loss_kpt`` (fp32 MSE vs ``targets['heatmaps']`` (B, K, H, W), weighted by
        ``keypoint_weights`` (B, K)) and, unless ``train_cfg['compute_acc']`` is False, ``acc_pose``."""
        gt = targets['heatmaps'].float()
        weights = targets['keypoint_weights'].float()
        with autocast_off():
            outputs = outputs.float()
            losses = dict(loss_kpt=self.loss_module(outputs, gt, weights))
        if (train_cfg or {}).get('compute_acc', True):
            b, _, h, w = outputs.shape
            pred_locs, _ = heatmap_maximum(outputs.detach())
            gt_locs, _ = heatmap_maximum(gt)
            norm = constant_norm(b, (h, w), outputs.device)
            losses['acc_pose'] = keypoint_pck_accuracy(pred_locs, gt_locs, weights > 0, 0.05, norm)
        return losses

    def flip_merge(self, outputs: Tensor, flipped_outputs: Tensor, flip_indices: Sequence[int] | Tensor,
                   test_cfg: dict | None = None) -> Tensor:
        """Average heatmaps with those of the flipped crop brought back (``test_cfg`` keys ``flip_mode``,
        default 'heatmap', and ``shift_heatmap``, default False, as in MMPose)."""
        test_cfg = test_cfg or {}
        unflipped = flip_heatmaps(flipped_outputs, flip_indices, test_cfg.get('flip_mode', 'heatmap'),
                                  test_cfg.get('shift_heatmap', False))
        return (outputs + unflipped) * 0.5

    def decode(self, outputs: Tensor) -> tuple[Tensor, Tensor]:
        """Heatmaps (B, K, H, W) -> keypoints (B, K, 2) input-crop px and scores (B, K), equal to the
        codec's ``decode``. Plain ``MSRAHeatmap`` decodes batched in torch; DARK/UDP refinements run the
        codec (numpy, OpenCV) per sample."""
        if self.decoder is None:
            raise RuntimeError('HeatmapHead needs decoder= (a heatmap codec config) to decode')
        if isinstance(self.decoder, MSRAHeatmap) and not self.decoder.unbiased:
            heatmaps = outputs.detach().float()
            locs, scores = heatmap_maximum(heatmaps)
            scale = torch.as_tensor(np.asarray(self.decoder.scale_factor, np.float32), device=locs.device)
            return refine_quarter_offset(locs, heatmaps) * scale, scores
        decoded = [self.decoder.decode(hm) for hm in outputs.detach().float().cpu().numpy()]
        keypoints = torch.from_numpy(np.concatenate([np.asarray(k, np.float32) for k, _ in decoded]))
        scores = torch.from_numpy(np.concatenate([np.asarray(s, np.float32) for _, s in decoded]))
        return keypoints.to(outputs.device), scores.to(outputs.device)
