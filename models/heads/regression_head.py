"""Fully connected coordinate-regression head (DeepPose style), MMPose 1.3.2 semantics.

Outputs normalised coordinates in [0, 1] of the input crop; ``codec.RegressionLabel`` maps them to input
pixels. :class:`models.heads.rle_head.RLEHead` extends it with per-coordinate sigmas.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from models.losses.accuracy import keypoint_pck_accuracy
from models.precision import autocast_off
from structures.flip import flip_coordinates
from utils.registry import CODECS, MODELS


def last_feature(feats: Tensor | Sequence[Tensor]) -> Tensor:
    """The last (deepest) feature of a backbone/neck output given as a tensor or a tuple of tensors."""
    return feats if isinstance(feats, Tensor) else feats[-1]


def build_decoder(decoder: dict | None) -> Any:
    """Build the head's codec from its config (``None`` stays ``None``)."""
    return CODECS.build(decoder) if decoder is not None else None


def init_linear_normal(module: nn.Module, std: float = 0.01) -> None:
    """Normal(0, ``std``) weights and zero biases for every ``nn.Linear`` under ``module``."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@MODELS.register_module()
class RegressionHead(nn.Module):
    """Linear layer from a pooled feature to K normalised (x, y) coordinates.

    Args:
        in_channels: channels of the (globally pooled) input feature.
        num_joints: number of keypoints K.
        loss: loss config, called as ``loss(pred (B,K,2), target (B,K,2), weight (B,K,1))``.
        decoder: codec config (``RegressionLabel``) used by :meth:`decode` and for the flip shift.
        init_cfg: unused; accepted for MMPose config compatibility (heads use their default init).
    """

    def __init__(self, in_channels: int, num_joints: int,
                 loss: dict | None = None, decoder: dict | None = None, init_cfg: Any = None) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_joints = num_joints
        self.loss_module = MODELS.build(loss or self.default_loss())
        self.decoder = build_decoder(decoder)
        self.init_layers()

    @staticmethod
    def default_loss() -> dict:
        return dict(type='SmoothL1Loss', use_target_weight=True)

    def init_layers(self) -> None:
        """Create the trainable layers (``fc``)."""
        self.fc = nn.Linear(self.in_channels, self.num_joints * 2)

    def init_weights(self) -> None:
        """MMPose default: Normal(0, 0.01) weights, zero biases for all Linear layers of the head
        (including those of the loss module, as mmengine's initialiser reaches them too)."""
        init_linear_normal(self)

    def forward(self, feats: Tensor | Sequence[Tensor]) -> Tensor:
        """(B, C) or (B, C, 1, 1) feature (last of ``feats``) -> normalised coordinates (B, K, 2)."""
        x = torch.flatten(last_feature(feats), 1)
        return self.fc(x).reshape(-1, self.num_joints, 2)

    def loss(self, outputs: Tensor, targets: dict[str, Tensor],
             train_cfg: dict | None = None) -> dict[str, Tensor]:
        """Losses and accuracy (fp32) from ``outputs`` (B, K, D) and targets ``keypoint_labels`` (B, K, 2),
        ``keypoint_weights`` (B, K). Returns ``{'loss_kpt', 'acc_pose'}`` (acc_pose detached, PCK@0.05 of
        the normalised coordinates). ``train_cfg`` is accepted for the common head interface."""
        labels = targets['keypoint_labels'].float()
        weights = targets['keypoint_weights'].float()
        with autocast_off():
            outputs = outputs.float()
            loss = self.compute_loss(outputs, labels, weights)
        coords = outputs[..., :2]
        acc = keypoint_pck_accuracy(coords, labels, weights > 0, 0.05,
                                    torch.ones(coords.shape[0], 2, device=coords.device))
        return dict(loss_kpt=loss, acc_pose=acc)

    def compute_loss(self, outputs: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
        """The loss module applied to fp32 ``outputs`` (B, K, 2), labels (B, K, 2), weights (B, K)."""
        return self.loss_module(outputs, labels, weights.unsqueeze(-1))

    def _input_size(self) -> tuple[int, int]:
        if self.decoder is None:
            raise RuntimeError(f'{type(self).__name__} needs decoder= (a RegressionLabel codec config) for '
                               'flip test and decoding')
        return tuple(self.decoder.input_size)

    def flip_merge(self, outputs: Tensor, flipped_outputs: Tensor, flip_indices: Sequence[int] | Tensor,
                   test_cfg: dict | None = None) -> Tensor:
        """Average ``outputs`` (B, K, D) with those of the flipped crop brought back
        (``test_cfg['shift_coords']``, default True, shifts x by one input pixel)."""
        test_cfg = test_cfg or {}
        unflipped = flip_coordinates(flipped_outputs, flip_indices, test_cfg.get('shift_coords', True),
                                     self._input_size())
        return (outputs + unflipped) * 0.5

    def decode(self, outputs: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised coordinates (B, K, 2) -> keypoints (B, K, 2) in input-crop px and scores (B, K)
        (all ones), equal to ``RegressionLabel.decode``."""
        w, h = self._input_size()
        scale = torch.tensor([w, h], dtype=torch.float32, device=outputs.device)
        keypoints = outputs[..., :2].float() * scale
        return keypoints, torch.ones(keypoints.shape[:2], dtype=torch.float32, device=outputs.device)
