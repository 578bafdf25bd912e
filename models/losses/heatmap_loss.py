"""Heatmap regression loss (mean squared error with keypoint / pixel masks), equal to MMPose 1.3.2."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from utils.registry import MODELS


@MODELS.register_module()
class KeypointMSELoss(nn.Module):
    """MSE between predicted and target heatmaps.

    Args:
        use_target_weight: kept for config compatibility; as in MMPose 1.3.2, ``target_weights`` given to
            :meth:`forward` are always applied.
        skip_empty_channel: ignore channels whose target heatmap is all zero.
        loss_weight: multiplier of the loss.
    """

    def __init__(self, use_target_weight: bool = False, skip_empty_channel: bool = False,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.use_target_weight = use_target_weight
        self.skip_empty_channel = skip_empty_channel
        self.loss_weight = loss_weight

    def forward(self, output: Tensor, target: Tensor, target_weights: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:
        """Scalar loss.

        Args:
            output: predicted heatmaps (B, K, H, W).
            target: target heatmaps (B, K, H, W).
            target_weights: optional (B, K) keypoint-wise or (B, K, H, W) pixel-wise weights.
            mask: optional valid-pixel mask (B, K|1, H, W).
        """
        full_mask = self._mask(target, target_weights, mask)
        if full_mask is None:
            loss = F.mse_loss(output, target)
        else:
            loss = (F.mse_loss(output, target, reduction='none') * full_mask).mean()
        return loss * self.loss_weight

    def _mask(self, target: Tensor, target_weights: Tensor | None, mask: Tensor | None) -> Tensor | None:
        """Product of the given pixel mask, the keypoint weights and the non-empty-channel mask."""
        if mask is not None and (mask.ndim != target.ndim or any(
                m not in (1, t) for m, t in zip(mask.shape, target.shape))):
            raise ValueError(f'KeypointMSELoss mask shape {tuple(mask.shape)} does not broadcast to the '
                             f'target shape {tuple(target.shape)}')
        if target_weights is not None:
            wdim = target_weights.ndim
            if wdim not in (2, 4) or target_weights.shape != target.shape[:wdim]:
                raise ValueError(f'KeypointMSELoss target_weights shape {tuple(target_weights.shape)} does '
                                 f'not match the target shape {tuple(target.shape)}')
            weights = target_weights.reshape(target_weights.shape + (1,) * (target.ndim - wdim))
            mask = weights if mask is None else mask * weights
        if self.skip_empty_channel:
            non_empty = (target != 0).flatten(2).any(dim=2)
            non_empty = non_empty.reshape(non_empty.shape + (1,) * (target.ndim - non_empty.ndim))
            mask = non_empty if mask is None else mask * non_empty
        return mask
