"""SimCC head (Li et al., ECCV 2022): per-keypoint 1-D classification vectors along x and y.

Optional deconvolution stage (a :class:`HeatmapHead` named ``deconv_head``) or a 1x1 ``final_layer``, then
``mlp_head_x`` / ``mlp_head_y`` Linear layers on the flattened maps. Names and parameter counts match
MMPose 1.3.2; decoded with ``codec.SimCCLabel``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.heads.heatmap_head import DEFAULT_FINAL_LAYER, HeatmapHead, init_conv_bn
from models.heads.regression_head import build_decoder, init_linear_normal, last_feature
from models.losses.accuracy import constant_norm, keypoint_pck_accuracy
from models.precision import autocast_off
from structures.flip import flip_vectors
from utils.registry import MODELS


def simcc_maximum(simcc_x: Tensor, simcc_y: Tensor) -> tuple[Tensor, Tensor]:
    """Argmax of SimCC vectors: x (B, K, Wx), y (B, K, Wy) -> locations (B, K, 2) in SimCC bins and values
    (B, K) = min of the two maxima; locations of non-positive values are -1 (MMPose's convention)."""
    max_x, x_locs = simcc_x.max(dim=-1)
    max_y, y_locs = simcc_y.max(dim=-1)
    vals = torch.minimum(max_x, max_y)
    locs = torch.stack([x_locs, y_locs], dim=-1).float()
    locs = torch.where((vals <= 0)[..., None], torch.full_like(locs, -1.0), locs)
    return locs, vals


@MODELS.register_module()
class SimCCHead(nn.Module):
    """SimCC vectors ``(x (B, K, Wx), y (B, K, Wy))`` with Wx = input_w * ratio, Wy = input_h * ratio.

    Args:
        in_channels: channels of the last backbone feature map.
        out_channels: number of keypoints K.
        input_size: crop size (w, h) in pixels.
        in_featuremap_size: size (w, h) of the input feature map.
        simcc_split_ratio: SimCC bins per input pixel.
        deconv_type: only ``'heatmap'`` (deconvolutions of :class:`HeatmapHead`) is supported.
        deconv_out_channels / deconv_kernel_sizes: deconvolutions; None or () for none (a 1x1
            ``final_layer`` then maps channels to K).
        deconv_num_groups: accepted for config compatibility (used only by MMPose's 'vipnas' type).
        conv_out_channels / conv_kernel_sizes / final_layer: as in :class:`HeatmapHead`.
        loss: loss config (default ``KLDiscretLoss(use_target_weight=True)``).
        decoder: ``SimCCLabel`` codec config.
        init_cfg: unused; accepted for MMPose config compatibility.
    """

    def __init__(self, in_channels: int, out_channels: int, input_size: tuple[int, int],
                 in_featuremap_size: tuple[int, int], simcc_split_ratio: float = 2.0,
                 deconv_type: str = 'heatmap',
                 deconv_out_channels: Sequence[int] | None = (256, 256, 256),
                 deconv_kernel_sizes: Sequence[int] | None = (4, 4, 4),
                 deconv_num_groups: Sequence[int] | None = (16, 16, 16),
                 conv_out_channels: Sequence[int] | None = None,
                 conv_kernel_sizes: Sequence[int] | None = None,
                 final_layer: dict | None = DEFAULT_FINAL_LAYER, loss: dict | None = None,
                 decoder: dict | None = None, init_cfg: Any = None) -> None:
        super().__init__()
        if deconv_type != 'heatmap':
            raise ValueError(f'SimCCHead deconv_type {deconv_type!r} is not supported; use "heatmap"')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.input_size = tuple(input_size)
        self.in_featuremap_size = tuple(in_featuremap_size)
        self.simcc_split_ratio = simcc_split_ratio
        self.loss_module = MODELS.build(loss or dict(type='KLDiscretLoss', use_target_weight=True))
        self.decoder = build_decoder(decoder)
        self.deconv_head: nn.Module | None = None
        self.final_layer: nn.Module | None = None
        num_deconv = len(deconv_out_channels) if deconv_out_channels else 0
        if num_deconv:
            self.deconv_head = HeatmapHead(in_channels, out_channels, deconv_out_channels,
                                           deconv_kernel_sizes, conv_out_channels, conv_kernel_sizes,
                                           final_layer)
            self.heatmap_size = tuple(s * 2 ** num_deconv for s in self.in_featuremap_size)
        else:
            if final_layer is not None:
                self.final_layer = nn.Conv2d(in_channels, out_channels, **{'kernel_size': 1, **final_layer})
            self.heatmap_size = self.in_featuremap_size
        flatten_dims = self.heatmap_size[0] * self.heatmap_size[1]
        self.mlp_head_x = nn.Linear(flatten_dims, int(self.input_size[0] * simcc_split_ratio))
        self.mlp_head_y = nn.Linear(flatten_dims, int(self.input_size[1] * simcc_split_ratio))

    def init_weights(self) -> None:
        """MMPose default: conv/deconv Normal(0, 0.001), BN 1/0, Linear Normal(0, 0.01) with zero bias."""
        init_conv_bn(self)
        init_linear_normal(self)

    def forward(self, feats: Tensor | Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Last feature map (B, C, h, w) -> ``(x (B, K, Wx), y (B, K, Wy))`` logits."""
        if self.deconv_head is not None:
            maps = self.deconv_head(feats)
        else:
            maps = last_feature(feats)
            if self.final_layer is not None:
                maps = self.final_layer(maps)
        x = torch.flatten(maps, 2)
        return self.mlp_head_x(x), self.mlp_head_y(x)

    def loss(self, outputs: tuple[Tensor, Tensor], targets: dict[str, Tensor],
             train_cfg: dict | None = None) -> dict[str, Tensor]:
        """``loss_kpt`` (fp32 KL vs ``keypoint_x_labels`` (B, K, Wx), ``keypoint_y_labels`` (B, K, Wy),
        weighted by ``keypoint_weights`` (B, K)) and ``acc_pose`` (PCK@0.05 in input pixels)."""
        gt = (targets['keypoint_x_labels'].float(), targets['keypoint_y_labels'].float())
        weights = targets['keypoint_weights'].float()
        with autocast_off():
            pred = (outputs[0].float(), outputs[1].float())
            loss = self.loss_module(pred, gt, weights)
        ratio = self.simcc_split_ratio
        pred_locs, _ = simcc_maximum(pred[0].detach(), pred[1].detach())
        gt_locs, _ = simcc_maximum(*gt)
        b, _, wx = pred[0].shape
        w, h = int(wx / ratio), int(pred[1].shape[-1] / ratio)
        # (h, w) against (x, y), as MMPose's simcc_pck_accuracy does
        norm = constant_norm(b, (h, w), weights.device)
        acc = keypoint_pck_accuracy(pred_locs / ratio, gt_locs / ratio, weights > 0, 0.05, norm)
        return dict(loss_kpt=loss, acc_pose=acc)

    def flip_merge(self, outputs: tuple[Tensor, Tensor], flipped_outputs: tuple[Tensor, Tensor],
                   flip_indices: Sequence[int] | Tensor,
                   test_cfg: dict | None = None) -> tuple[Tensor, Tensor]:
        """Average each axis' vectors with the flipped crop's, brought back by :func:`flip_vectors`."""
        flip_x, flip_y = flip_vectors(flipped_outputs[0], flipped_outputs[1], flip_indices)
        return (outputs[0] + flip_x) * 0.5, (outputs[1] + flip_y) * 0.5

    def decode(self, outputs: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """SimCC vectors -> keypoints (B, K, 2) input-crop px and scores (B, K), equal to
        ``SimCCLabel.decode``; batched in torch unless the codec uses DARK or visibility decoding."""
        if self.decoder is None:
            raise RuntimeError('SimCCHead needs decoder= (a SimCCLabel codec config) to decode')
        simcc_x, simcc_y = outputs[0].detach().float(), outputs[1].detach().float()
        if not (self.decoder.use_dark or self.decoder.decode_visibility):
            locs, scores = simcc_maximum(simcc_x, simcc_y)
            return locs / self.decoder.simcc_split_ratio, scores
        keypoints, scores = self.decoder.decode(simcc_x.cpu().numpy(), simcc_y.cpu().numpy())
        if isinstance(scores, tuple):  # (scores, visibility)
            scores = scores[0]
        device = simcc_x.device
        return (torch.from_numpy(np.asarray(keypoints, np.float32)).to(device),
                torch.from_numpy(np.asarray(scores, np.float32)).to(device))
