"""SimCC classification loss: KL divergence between softmaxed 1-D predictions and label vectors."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.registry import MODELS


@MODELS.register_module()
class KLDiscretLoss(nn.Module):
    """Discrete KL divergence for SimCC (Li et al., ECCV 2022), equal to MMPose 1.3.2.

    Args:
        beta: temperature multiplied into the predictions before log-softmax.
        label_softmax: apply a softmax (temperature ``label_beta``) to the labels first.
        label_beta: temperature of that label softmax.
        use_target_weight: weight each keypoint's loss by its target weight.
        mask: keypoint indices whose loss is multiplied by ``mask_weight``.
        mask_weight: weight of the masked keypoints.
    """

    def __init__(self, beta: float = 1.0, label_softmax: bool = False, label_beta: float = 10.0,
                 use_target_weight: bool = True, mask: list[int] | None = None,
                 mask_weight: float = 1.0) -> None:
        super().__init__()
        self.beta = beta
        self.label_softmax = label_softmax
        self.label_beta = label_beta
        self.use_target_weight = use_target_weight
        self.mask = mask
        self.mask_weight = mask_weight

    def criterion(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Per-row loss: mean over bins of KL(labels || softmax(beta * logits)); (M, W) -> (M,)."""
        log_pt = F.log_softmax(logits * self.beta, dim=1)
        if self.label_softmax:
            labels = F.softmax(labels * self.label_beta, dim=1)
        return F.kl_div(log_pt, labels, reduction='none').mean(dim=1)

    def forward(self, pred_simcc: tuple[Tensor, Tensor], gt_simcc: tuple[Tensor, Tensor],
                target_weight: Tensor) -> Tensor:
        """Scalar loss: sum over instances and axes of per-keypoint losses, divided by K.

        Args:
            pred_simcc: predicted logits ``(x (B, K, Wx), y (B, K, Wy))``.
            gt_simcc: label vectors of the same shapes.
            target_weight: (B, K) keypoint weights.
        """
        b, k, _ = pred_simcc[0].shape
        weight = target_weight.reshape(-1) if self.use_target_weight else 1.0
        loss = torch.zeros((), dtype=pred_simcc[0].dtype, device=pred_simcc[0].device)
        for pred, target in zip(pred_simcc, gt_simcc):
            per_kpt = self.criterion(pred.reshape(-1, pred.shape[-1]), target.reshape(-1, target.shape[-1]))
            per_kpt = per_kpt * weight
            if self.mask is not None:
                scale = torch.ones(k, dtype=per_kpt.dtype, device=per_kpt.device)
                scale[self.mask] = self.mask_weight
                per_kpt = (per_kpt.reshape(b, k) * scale).reshape(-1)
            loss = loss + per_kpt.sum()
        return loss / k
