"""Codec training targets for a whole batch, computed on the batch's device.

Each encoder gives what ``codec.encode`` + ``PackPoseInputs`` + ``pose_collate`` give for the same
keypoints: one instance per sample, the instance dim dropped, float32 (B, ...) tensors.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from codec import RegressionLabel, SimCCLabel


def _labelled_weights(visible: torch.Tensor, lost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(drawn (B, K) bool, weights (B, K)) as ``codec.base.drawn_and_weights``."""
    labelled = ~(visible < 0.5)
    return labelled & ~lost, torch.where(labelled & lost, torch.zeros_like(visible), visible)


def encode_regression(codec: RegressionLabel, keypoints: torch.Tensor,
                      visible: torch.Tensor) -> dict[str, torch.Tensor]:
    """``RegressionLabel`` targets of keypoints (B, K, 2) input px with visibility (B, K):
    ``keypoint_labels`` (B, K, 2) in [0, 1] of the input size, ``keypoint_weights`` (B, K)."""
    w, h = codec.input_size
    inside = ((keypoints >= 0) & (keypoints <= keypoints.new_tensor([w - 1, h - 1]))).all(dim=-1)
    labels = (keypoints.double() / keypoints.new_tensor([w, h], dtype=torch.float64)).float()
    return {'keypoint_labels': labels, 'keypoint_weights': (inside & (visible > 0.5)).float()}


def _simcc_gaussian(mu: torch.Tensor, bins: int, sigma: float, on: torch.Tensor,
                    normalize: bool) -> torch.Tensor:
    grid = torch.arange(bins, dtype=torch.float32, device=mu.device)
    dist2 = (grid - mu[..., None].float()) ** 2
    f32 = {'dtype': torch.float32, 'device': mu.device}
    labels = torch.exp(-dist2 / torch.tensor(2 * sigma ** 2, **f32))
    labels = torch.where(on, labels, torch.zeros((), **f32))
    if normalize:
        labels = labels / torch.tensor(sigma * math.sqrt(math.pi * 2), **f32)
    return labels


def _simcc_one_hot(mu: torch.Tensor, bins: int, eps: float, on: torch.Tensor) -> torch.Tensor:
    f32 = {'dtype': torch.float32, 'device': mu.device}
    grid = torch.arange(bins, device=mu.device)
    fill = torch.where(on, torch.tensor(eps / (bins - 1), **f32), torch.zeros((), **f32))
    return torch.where(on & (grid == mu[..., None]), torch.tensor(1.0 - eps, **f32), fill)


def encode_simcc(codec: SimCCLabel, keypoints: torch.Tensor,
                 visible: torch.Tensor) -> dict[str, torch.Tensor]:
    """``SimCCLabel`` targets of keypoints (B, K, 2) input px with visibility (B, K):
    ``keypoint_x_labels`` (B, K, Wx), ``keypoint_y_labels`` (B, K, Hy), ``keypoint_weights`` (B, K)."""
    bins_w, bins_h = codec._bins()
    mu = torch.round(keypoints * codec.simcc_split_ratio).long()
    size = mu.new_tensor([bins_w, bins_h])
    if codec.smoothing_type == 'gaussian':
        radius = torch.as_tensor(codec.sigma * 3, device=mu.device)
        lost = ((mu - radius >= size) | (mu + radius + 1 < 0)).any(dim=-1)
    else:
        lost = ((mu >= size) | (mu < 0)).any(dim=-1)
    on, weights = _labelled_weights(visible, lost)
    on = on[..., None]
    if codec.smoothing_type == 'gaussian':
        sx, sy = (float(s) for s in codec.sigma)
        x = _simcc_gaussian(mu[..., 0], bins_w, sx, on, codec.normalize)
        y = _simcc_gaussian(mu[..., 1], bins_h, sy, on, codec.normalize)
    else:
        x = _simcc_one_hot(mu[..., 0], bins_w, codec.label_smooth_weight, on)
        y = _simcc_one_hot(mu[..., 1], bins_h, codec.label_smooth_weight, on)
    return {'keypoint_weights': weights, 'keypoint_x_labels': x, 'keypoint_y_labels': y}


DEVICE_CODECS: dict[str, Callable[..., dict[str, torch.Tensor]]] = {
    'RegressionLabel': encode_regression, 'SimCCLabel': encode_simcc}


def encode_targets(codec: object, keypoints: torch.Tensor, visible: torch.Tensor,
                   joint_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Targets of ``codec`` for keypoints (B, K, 2) input px, visibility (B, K), on their device.

    ``joint_weights`` (B, K) multiplies ``keypoint_weights`` (``use_dataset_keypoint_weights``).
    Keys are sorted like ``pose_collate``'s.
    """
    out = DEVICE_CODECS[type(codec).__name__](codec, keypoints.float(), visible.float())
    if joint_weights is not None:
        out['keypoint_weights'] = out['keypoint_weights'] * joint_weights
    return {k: out[k] for k in sorted(out)}
