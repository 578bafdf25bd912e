"""RTMDetSepBNHead: RTMDet's detection head (conv weights shared across levels, BatchNorm per level)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from models.detection.conv_module import DEFAULT_ACT, conv_3x3_module
from models.detection.point_generator import MlvlPointGenerator, distance2bbox
from models.detection.postprocess import filter_scores_and_topk, nms_postprocess
from utils.registry import MODELS

DEFAULT_TEST_CFG = {'nms_pre': 30000, 'min_bbox_size': 0, 'score_thr': 0.001,
                    'nms': {'type': 'nms', 'iou_threshold': 0.65}, 'max_per_img': 300}


@MODELS.register_module()
class RTMDetSepBNHead(nn.Module):
    """Per level: ``stacked_convs`` cls convs and reg convs, then 1x1 ``rtm_cls`` / ``rtm_reg``.

    With ``share_conv`` the conv weights of every level are those of level 0 (the state dict still
    lists them under each level, as MMDetection's does); the BatchNorms stay per level.

    ``forward(feats) -> (cls_scores, bbox_preds)``: per level (B, num_classes, H, W) logits and
    (B, 4, H, W) (left, top, right, bottom) distances in input px.

    Args:
        anchor_generator: ``dict(type='MlvlPointGenerator', offset, strides)``.
        bbox_coder, loss_cls, loss_bbox, train_cfg: training-only keys of MMDetection configs,
            accepted and ignored (boxes are always decoded as point distances).
    """

    def __init__(self, num_classes: int, in_channels: int, feat_channels: int = 256,
                 stacked_convs: int = 2, anchor_generator: Mapping | None = None,
                 with_objectness: bool = False, exp_on_reg: bool = False, share_conv: bool = True,
                 use_depthwise: bool = False, pred_kernel_size: int = 1, norm_cfg: Mapping | None = None,
                 act_cfg: Mapping | None = DEFAULT_ACT, test_cfg: Mapping | None = None,
                 bbox_coder: Mapping | None = None, loss_cls: Mapping | None = None,
                 loss_bbox: Mapping | None = None, train_cfg: Mapping | None = None) -> None:
        super().__init__()
        if with_objectness:
            raise ValueError('RTMDetSepBNHead: with_objectness=True is not supported '
                             '(RTMDet configs use False)')
        if bbox_coder is not None and bbox_coder.get('type') != 'DistancePointBBoxCoder':
            raise ValueError(f"RTMDetSepBNHead: bbox_coder {bbox_coder.get('type')!r} is not supported; "
                             "expected 'DistancePointBBoxCoder'")
        gen = dict(anchor_generator or {'offset': 0, 'strides': [8, 16, 32]})
        gen.pop('type', None)
        self.prior_generator = MlvlPointGenerator(**gen)
        self.num_classes = num_classes
        self.exp_on_reg = exp_on_reg
        self.test_cfg = dict(test_cfg or DEFAULT_TEST_CFG)
        conv = conv_3x3_module(use_depthwise)
        kw = dict(norm_cfg=norm_cfg, act_cfg=act_cfg)
        levels = range(self.prior_generator.num_levels)
        chans = [in_channels] + [feat_channels] * (stacked_convs - 1)
        self.cls_convs = nn.ModuleList(
            nn.ModuleList(conv(c, feat_channels, 3, 1, 1, **kw) for c in chans) for _ in levels)
        self.reg_convs = nn.ModuleList(
            nn.ModuleList(conv(c, feat_channels, 3, 1, 1, **kw) for c in chans) for _ in levels)
        pad = pred_kernel_size // 2
        self.rtm_cls = nn.ModuleList(nn.Conv2d(feat_channels, num_classes, pred_kernel_size, padding=pad)
                                     for _ in levels)
        self.rtm_reg = nn.ModuleList(nn.Conv2d(feat_channels, 4, pred_kernel_size, padding=pad)
                                     for _ in levels)
        if share_conv:
            for n in levels:
                for i in range(stacked_convs):
                    self.cls_convs[n][i].conv = self.cls_convs[0][i].conv
                    self.reg_convs[n][i].conv = self.reg_convs[0][i].conv

    def forward(self, feats: Sequence[Tensor]) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """Per-level (B, C, H, W) maps -> per level (B, num_classes, H, W) class logits and
        (B, 4, H, W) (left, top, right, bottom) box distances in input px."""
        cls_scores, bbox_preds = [], []
        for idx, x in enumerate(feats):
            cls_feat, reg_feat = x, x
            for layer in self.cls_convs[idx]:
                cls_feat = layer(cls_feat)
            for layer in self.reg_convs[idx]:
                reg_feat = layer(reg_feat)
            reg = self.rtm_reg[idx](reg_feat)
            if self.exp_on_reg:
                reg = reg.exp()
            cls_scores.append(self.rtm_cls[idx](cls_feat))
            bbox_preds.append(reg * self.prior_generator.strides[idx][0])
        return tuple(cls_scores), tuple(bbox_preds)

    def predict_by_feat(self, cls_scores: Sequence[Tensor], bbox_preds: Sequence[Tensor],
                        img_metas: Sequence[Mapping]) -> list[dict[str, Tensor]]:
        """Decode head outputs into per-image detections.

        Args:
            cls_scores, bbox_preds: outputs of :meth:`forward`.
            img_metas: per image ``img_shape`` (h, w) of the network input (boxes are clamped to it)
                and ``scale_factor`` (w_scale, h_scale) of the resize (boxes are divided by it).

        Returns:
            per image ``{'bboxes': (K, 4) xyxy original px, 'scores': (K,), 'labels': (K,) int64}``.
        """
        cfg = self.test_cfg
        priors = self.prior_generator.grid_priors([c.shape[-2:] for c in cls_scores],
                                                  cls_scores[0].dtype, cls_scores[0].device)
        results = []
        for b, meta in enumerate(img_metas):
            level_boxes, level_scores, level_labels = [], [], []
            for cls, reg, pts in zip(cls_scores, bbox_preds, priors):
                probs = cls[b].permute(1, 2, 0).reshape(-1, self.num_classes).sigmoid()
                dist = reg[b].permute(1, 2, 0).reshape(-1, 4)
                scores, labels, keep = filter_scores_and_topk(probs, cfg.get('score_thr', 0),
                                                              cfg.get('nms_pre', -1))
                level_boxes.append(distance2bbox(pts[keep], dist[keep], meta['img_shape']))
                level_scores.append(scores)
                level_labels.append(labels)
            results.append(nms_postprocess(torch.cat(level_boxes), torch.cat(level_scores),
                                           torch.cat(level_labels), cfg, meta.get('scale_factor')))
        return results
