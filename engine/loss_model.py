"""The module that DDP wraps for training: the estimator's forward and its loss, in one ``forward``."""
from __future__ import annotations

import torch
from torch import nn


class LossModel(nn.Module):
    """``forward(inputs, targets) -> estimator.loss(...)``: DDP must wrap a forward that computes the
    loss so that its gradient all-reduce hooks fire."""

    def __init__(self, estimator: nn.Module) -> None:
        super().__init__()
        self.estimator = estimator

    def forward(self, inputs: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """uint8 (B, 3, H, W) BGR images and (B, ...) targets -> the estimator's loss dict."""
        return self.estimator.loss(inputs, targets)


def estimator_of(train_model: nn.Module) -> nn.Module:
    """The pose estimator inside a :class:`LossModel`, DDP-wrapped or not."""
    return getattr(train_model, 'module', train_model).estimator
