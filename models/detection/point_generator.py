"""Anchor points of dense detectors (MMDetection's MlvlPointGenerator, no stride output)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class MlvlPointGenerator:
    """Grid points per feature level: ``(x, y) = ((j + offset) * stride, (i + offset) * stride)``.

    Args:
        strides: stride of each level in input pixels (an int or an (sx, sy) pair each).
        offset: fraction of a stride added to each point (RTMDet uses 0).
    """

    def __init__(self, strides: Sequence[int | Sequence[int]], offset: float = 0.5) -> None:
        self.strides = [(s, s) if isinstance(s, int) else tuple(s) for s in strides]
        self.offset = offset

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    def single_level_grid_priors(self, featmap_size: Sequence[int], level: int,
                                 dtype: torch.dtype = torch.float32,
                                 device: torch.device | str = 'cpu') -> Tensor:
        """Points of one level, row-major over (H, W): (H * W, 2) input px."""
        h, w = int(featmap_size[0]), int(featmap_size[1])
        sx, sy = self.strides[level]
        xs = (torch.arange(w, device=device) + self.offset) * sx
        ys = (torch.arange(h, device=device) + self.offset) * sy
        yy, xx = torch.meshgrid(ys.to(dtype), xs.to(dtype), indexing='ij')
        return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)

    def grid_priors(self, featmap_sizes: Sequence[Sequence[int]], dtype: torch.dtype = torch.float32,
                    device: torch.device | str = 'cpu') -> list[Tensor]:
        """Points of every level: list of (H_i * W_i, 2) input px."""
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(f'{len(featmap_sizes)} feature maps for {self.num_levels} strides')
        return [self.single_level_grid_priors(size, i, dtype, device) for i, size in enumerate(featmap_sizes)]


def distance2bbox(points: Tensor, distance: Tensor, max_shape: Sequence[int] | None = None) -> Tensor:
    """Boxes from points and (left, top, right, bottom) distances.

    Args:
        points: (N, 2) (x, y) px.
        distance: (N, 4) distances px.
        max_shape: (h, w) to clamp x to [0, w] and y to [0, h]; None to skip.

    Returns:
        (N, 4) xyxy px.
    """
    boxes = torch.cat([points - distance[:, :2], points + distance[:, 2:]], dim=-1)
    if max_shape is not None:
        boxes[:, 0::2] = boxes[:, 0::2].clamp(min=0, max=max_shape[1])
        boxes[:, 1::2] = boxes[:, 1::2].clamp(min=0, max=max_shape[0])
    return boxes
