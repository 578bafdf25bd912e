"""Global average pooling neck: feature maps (B, C, H, W) -> vectors (B, C)."""
from __future__ import annotations

import torch
from torch import nn

from utils.registry import MODELS


@MODELS.register_module()
class GlobalAveragePooling(nn.Module):
    """Average each feature map over its spatial dims, as MMPose's ``GlobalAveragePooling`` neck.

    ``forward`` takes a tensor (B, C, H, W), or a tuple/list of them, and returns (B, C) tensors in the
    same container type. The result is reshaped with the batch size (never squeezed), so B = 1 keeps
    its batch dim.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gap = nn.AdaptiveAvgPool2d((1, 1))

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return self.gap(x).reshape(x.shape[0], -1)

    def forward(self, inputs: torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]
                ) -> torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]:
        """Tensor -> (B, C) tensor; tuple/list of (B, C_i, H_i, W_i) -> tuple/list of (B, C_i)."""
        if isinstance(inputs, torch.Tensor):
            return self._pool(inputs)
        if isinstance(inputs, tuple):
            return tuple(self._pool(x) for x in inputs)
        if isinstance(inputs, list):
            return [self._pool(x) for x in inputs]
        raise TypeError(f'GlobalAveragePooling expects a tensor or a tuple/list of tensors, '
                        f'got {type(inputs).__name__}')
