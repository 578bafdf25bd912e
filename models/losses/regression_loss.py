"""Coordinate-regression losses: RLE (residual log-likelihood), smooth L1 and L1.

Inputs are normalised coordinates (B, K, 2) in [0, 1] of the input crop, as produced by
``codec.RegressionLabel``; target weights are (B, K) or (B, K, 1). Values equal MMPose 1.3.2.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.losses.realnvp import RealNVP
from utils.registry import MODELS


def _expand_weight(weight: Tensor, ndim: int) -> Tensor:
    """Append singleton dims so ``weight`` broadcasts against a tensor of ``ndim`` dims."""
    while weight.ndim < ndim:
        weight = weight.unsqueeze(-1)
    return weight


@MODELS.register_module()
class RLELoss(nn.Module):
    """Residual log-likelihood estimation loss (Li et al., ICCV 2021).

    Args:
        use_target_weight: multiply each keypoint's loss by its target weight.
        size_average: divide the summed loss by the batch size.
        residual: add the closed-form prior term Q (the flow learns the residual density).
        q_distribution: ``'laplace'`` or ``'gaussian'`` prior Q of the normalised error.
    """

    def __init__(self, use_target_weight: bool = False, size_average: bool = True, residual: bool = True,
                 q_distribution: str = 'laplace') -> None:
        super().__init__()
        if q_distribution not in ('laplace', 'gaussian'):
            raise ValueError(f'RLELoss q_distribution must be "laplace" or "gaussian", '
                             f'got {q_distribution!r}')
        self.use_target_weight = use_target_weight
        self.size_average = size_average
        self.residual = residual
        self.q_distribution = q_distribution
        self.flow_model = RealNVP()

    def forward(self, pred: Tensor, sigma: Tensor, target: Tensor,
                target_weight: Tensor | None = None) -> Tensor:
        """Scalar loss.

        Args:
            pred: predicted normalised coordinates (B, K, 2).
            sigma: raw (pre-sigmoid) scale outputs (B, K, 2).
            target: target normalised coordinates (B, K, 2).
            target_weight: (B, K) or (B, K, 1) keypoint weights; required when ``use_target_weight``.
        """
        sigma = sigma.sigmoid()
        error = (pred - target) / (sigma + 1e-9)
        b, k = target.shape[:2]
        log_phi = self.flow_model.log_prob(error.reshape(-1, 2)).reshape(b, k, 1)
        loss = torch.log(sigma) - log_phi
        if self.residual:
            if self.q_distribution == 'laplace':
                loss = loss + torch.log(sigma * 2) + torch.abs(error)
            else:
                loss = loss + torch.log(sigma * math.sqrt(2 * math.pi)) + 0.5 * error ** 2
        if self.use_target_weight:
            if target_weight is None:
                raise ValueError('RLELoss(use_target_weight=True) needs target_weight')
            loss = loss * _expand_weight(target_weight, loss.ndim)
        if self.size_average:
            loss = loss / len(loss)
        return loss.sum()


class _WeightedElementwiseLoss(nn.Module):
    """Base for element-wise losses on (optionally weighted) predictions and targets."""

    def __init__(self, use_target_weight: bool = False, loss_weight: float = 1.0,
                 reduction: str = 'mean') -> None:
        super().__init__()
        if reduction not in ('mean', 'sum', 'none'):
            raise ValueError(f'{type(self).__name__} reduction must be mean, sum or none, got {reduction!r}')
        self.use_target_weight = use_target_weight
        self.loss_weight = loss_weight
        self.reduction = reduction

    def criterion(self, output: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, output: Tensor, target: Tensor, target_weight: Tensor | None = None) -> Tensor:
        """Loss between ``output`` and ``target`` (B, K, D); ``target_weight`` (B, K) or (B, K, 1)."""
        if self.use_target_weight:
            if target_weight is None:
                raise ValueError(f'{type(self).__name__}(use_target_weight=True) needs target_weight')
            weight = _expand_weight(target_weight, output.ndim)
            output, target = output * weight, target * weight
        return self.criterion(output, target) * self.loss_weight


@MODELS.register_module()
class SmoothL1Loss(_WeightedElementwiseLoss):
    """Smooth L1 (beta 1) between weighted coordinates, averaged over all elements."""

    def __init__(self, use_target_weight: bool = False, loss_weight: float = 1.0) -> None:
        super().__init__(use_target_weight, loss_weight)

    def criterion(self, output: Tensor, target: Tensor) -> Tensor:
        return F.smooth_l1_loss(output, target)


@MODELS.register_module()
class L1Loss(_WeightedElementwiseLoss):
    """L1 between weighted coordinates with ``reduction`` ``'mean'`` | ``'sum'`` | ``'none'``."""

    def __init__(self, reduction: str = 'mean', use_target_weight: bool = False,
                 loss_weight: float = 1.0) -> None:
        super().__init__(use_target_weight, loss_weight, reduction)

    def criterion(self, output: Tensor, target: Tensor) -> Tensor:
        return F.l1_loss(output, target, reduction=self.reduction)
