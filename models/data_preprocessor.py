"""Image normalisation on the model's device: uint8 BGR batches -> float normalised network inputs."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from utils.registry import MODELS


@MODELS.register_module()
class PoseDataPreprocessor(nn.Module):
    """``(x[:, order] - mean) / std`` with the channel order fixed by ``bgr_to_rgb`` / ``rgb_to_bgr``.

    Same result as MMPose 1.3.2's ``PoseDataPreprocessor`` (mmengine ``ImgDataPreprocessor``) for
    top-down batches. ``mean`` and ``std`` are non-persistent buffers (not in checkpoints), so they move
    with the model.

    Args:
        mean: per-channel mean (3 values, in the output channel order); None means 0.
        std: per-channel standard deviation (3 values); None means 1.
        bgr_to_rgb: reverse the channel order (BGR input -> RGB network input).
        rgb_to_bgr: reverse it too (the other way round); at most one of the two may be set.
        non_blocking: copy inputs to the device asynchronously (pinned memory on CUDA).
    """

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 bgr_to_rgb: bool = False, rgb_to_bgr: bool = False, non_blocking: bool = True) -> None:
        super().__init__()
        if bgr_to_rgb and rgb_to_bgr:
            raise ValueError(f'{type(self).__name__}: bgr_to_rgb and rgb_to_bgr cannot both be True')
        if (mean is None) != (std is None):
            raise ValueError(f'{type(self).__name__}: give both mean and std, or neither')
        mean, std = (0.0, 0.0, 0.0) if mean is None else mean, (1.0, 1.0, 1.0) if std is None else std
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f'{type(self).__name__}: mean and std need 3 values, got {mean} and {std}')
        self.swap_channels = bgr_to_rgb or rgb_to_bgr
        self.non_blocking = non_blocking
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), False)

    def forward(self, inputs: Tensor) -> Tensor:
        """uint8 (or float) images (B, 3, H, W) on any device -> float32 (B, 3, H, W) on this module's
        device, channel-swapped and normalised."""
        if inputs.ndim != 4 or inputs.shape[1] != 3:
            raise ValueError(f'{type(self).__name__} expects images (B, 3, H, W), '
                             f'got shape {tuple(inputs.shape)}')
        x = inputs.to(self.mean.device, non_blocking=self.non_blocking)
        if self.swap_channels:
            x = x.flip(1)
        return (x.float() - self.mean) / self.std
