"""Post-processing of dense detector outputs: score filter, top-k, rescale, size filter, class-aware NMS."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchvision.ops import batched_nms


def filter_scores_and_topk(scores: Tensor, score_thr: float, topk: int) -> tuple[Tensor, Tensor, Tensor]:
    """Keep (prior, class) pairs scoring above ``score_thr``, then the ``topk`` best.

    Args:
        scores: (N, C) per-class probabilities of N priors.

    Returns:
        scores (M,) descending, labels (M,) int64 class index, prior indices (M,) int64.
    """
    valid = scores > score_thr
    kept = scores[valid]
    idxs = torch.nonzero(valid)
    kept, order = kept.sort(descending=True)
    num = min(topk, idxs.size(0)) if topk > 0 else idxs.size(0)
    prior_idx, labels = idxs[order[:num]].unbind(dim=1)
    return kept[:num], labels, prior_idx


def nms_postprocess(bboxes: Tensor, scores: Tensor, labels: Tensor, test_cfg: Mapping,
                    scale_factor: Sequence[float] | None = None) -> dict[str, Tensor]:
    """Rescale, drop degenerate boxes and run class-aware NMS as MMDetection's dense heads do.

    Args:
        bboxes: (M, 4) xyxy in network-input px.
        scores, labels: (M,).
        test_cfg: ``min_bbox_size`` (boxes not wider/taller than it are dropped; < 0 keeps all),
            ``nms=dict(iou_threshold=...)``, ``max_per_img``.
        scale_factor: (w_scale, h_scale) of the resize; boxes are divided by it (original image px).

    Returns:
        ``{'bboxes': (K, 4), 'scores': (K,), 'labels': (K,)}`` sorted by score, K <= max_per_img.
    """
    if scale_factor is not None:
        sw, sh = scale_factor
        bboxes = bboxes / bboxes.new_tensor([sw, sh, sw, sh])
    min_size = test_cfg.get('min_bbox_size', -1)
    if min_size >= 0:
        keep = ((bboxes[:, 2] - bboxes[:, 0]) > min_size) & ((bboxes[:, 3] - bboxes[:, 1]) > min_size)
        bboxes, scores, labels = bboxes[keep], scores[keep], labels[keep]
    if bboxes.numel() > 0:
        nms_cfg = test_cfg.get('nms', {'iou_threshold': 0.65})
        if nms_cfg.get('type', 'nms') != 'nms':
            raise ValueError(f"test_cfg.nms type {nms_cfg['type']!r} is not supported; expected 'nms'")
        keep = batched_nms(bboxes, scores, labels, float(nms_cfg['iou_threshold']))
        keep = keep[:test_cfg.get('max_per_img', 100)]
        bboxes, scores, labels = bboxes[keep], scores[keep], labels[keep]
    return {'bboxes': bboxes, 'scores': scores, 'labels': labels}
