"""RLE head (Li et al., ICCV 2021): regression of coordinates plus per-coordinate sigmas.

Layers are split as in the original MMPose_Clean project: ``fc_coord`` (K*2 coordinates) and ``fc_sigma``
(K*2 raw sigmas). MMPose's single ``fc`` (K*4 rows ordered x, y, sigma_x, sigma_y per joint) is split by
``models.checkpoints.naming.split_fc``, both when a checkpoint is converted and when MMPose's ``fc``
reaches ``RLEHead.load_state_dict``, so official MMPose checkpoints load unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from models.checkpoints.naming import split_fc
from models.heads.regression_head import RegressionHead, last_feature
from models.precision import autocast_enabled, autocast_off
from utils.registry import MODELS


@MODELS.register_module()
class RLEHead(RegressionHead):
    """Forward output (B, K, 4) = (x, y, sigma_x, sigma_y): x, y normalised to the input crop, sigmas raw
    (pre-sigmoid) as in MMPose; :meth:`decode` applies the sigmoid and scores = 1 - mean(sigma).

    Args:
        in_channels: channels of the pooled input feature.
        num_joints: number of keypoints K.
        loss: loss config (default ``RLELoss(use_target_weight=True)``), called as
            ``loss(coords, raw_sigma, target, weight (B,K,1))``.
        decoder: ``RegressionLabel`` codec config.
        init_cfg: unused; accepted for MMPose config compatibility.
    """

    @staticmethod
    def default_loss() -> dict:
        return dict(type='RLELoss', use_target_weight=True)

    def init_layers(self) -> None:
        """Create ``fc_coord`` and ``fc_sigma`` and the hook converting MMPose's ``fc`` on load."""
        self.fc_coord = nn.Linear(self.in_channels, self.num_joints * 2)
        self.fc_sigma = nn.Linear(self.in_channels, self.num_joints * 2)
        self.register_load_state_dict_pre_hook(_split_mmpose_fc)

    def forward(self, feats: Tensor | Sequence[Tensor]) -> Tensor:
        """(B, C) feature (last of ``feats``) -> (B, K, 4) coordinates and raw sigmas, float32 even under
        autocast (two small Linear layers: fp32 costs nothing and keeps the coordinates exact)."""
        x = torch.flatten(last_feature(feats), 1)
        if autocast_enabled():  # never while tracing/exporting: the graph keeps the plain path
            x = x.float()
        with autocast_off():
            coords = self.fc_coord(x).reshape(-1, self.num_joints, 2)
            sigmas = self.fc_sigma(x).reshape(-1, self.num_joints, 2)
        return torch.cat([coords, sigmas], dim=-1)

    def compute_loss(self, outputs: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
        return self.loss_module(outputs[..., :2], outputs[..., 2:4], labels, weights.unsqueeze(-1))

    def flip_merge(self, outputs: Tensor, flipped_outputs: Tensor, flip_indices: Sequence[int] | Tensor,
                   test_cfg: dict | None = None) -> Tensor:
        """Average coordinates like :class:`RegressionHead` and sigmas after the sigmoid (as MMPose does);
        the merged sigmas are returned as logits so the result decodes like a forward output."""
        merged = super().flip_merge(outputs[..., :2], flipped_outputs[..., :2], flip_indices, test_cfg)
        index = torch.as_tensor(flip_indices, dtype=torch.long, device=outputs.device).reshape(-1)
        sigma = (outputs[..., 2:4].sigmoid() + flipped_outputs[:, index, 2:4].sigmoid()) * 0.5
        return torch.cat([merged, torch.logit(sigma)], dim=-1)

    def decode(self, outputs: Tensor) -> tuple[Tensor, Tensor]:
        """(B, K, 4) -> keypoints (B, K, 2) input-crop px and scores 1 - mean(sigmoid(sigma)) (B, K), equal
        to ``RegressionLabel.decode`` of MMPose's sigmoid-applied outputs."""
        keypoints, _ = super().decode(outputs)
        scores = (1 - outputs[..., 2:4].float().sigmoid()).mean(dim=-1)
        return keypoints, scores


def _split_mmpose_fc(module: RLEHead, state_dict: dict, prefix: str, *args) -> None:
    """Load hook: MMPose's ``fc`` -> ``fc_coord``, ``fc_sigma``."""
    for name in ('weight', 'bias'):
        key = f'{prefix}fc.{name}'
        if key in state_dict:
            state_dict[f'{prefix}fc_coord.{name}'], state_dict[f'{prefix}fc_sigma.{name}'] = \
                split_fc(state_dict.pop(key))

