"""Traceable wrappers around a pose network for export: preprocessing, flip test and decoding in the graph.

Decoding and flip merging reuse the head's own ``decode`` / ``flip_merge`` (tensor code), so the exported
graph computes exactly what ``TopdownPoseEstimator.predict`` computes up to the crop->image mapping.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn


class Preprocess(nn.Module):
    """uint8 (or float) BGR crops (B, 3, H, W) -> float32 normalised network input (B, 3, H, W).

    Mirrors ``PoseDataPreprocessor``: optional BGR->RGB channel swap, then ``(x - mean) / std`` with
    ``mean``/``std`` given in the channel order after the swap (as MMPose does).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], bgr_to_rgb: bool) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f'Preprocess expects 3 mean and 3 std values, got mean={mean}, std={std}')
        self.bgr_to_rgb = bool(bgr_to_rgb)
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    @classmethod
    def from_module(cls, preprocessor: nn.Module) -> Preprocess:
        """Copy a model's data preprocessor (``PoseDataPreprocessor`` / ``DetDataPreprocessor``: ``mean``
        and ``std`` buffers, ``swap_channels`` or ``bgr_to_rgb``)."""
        swap = getattr(preprocessor, 'swap_channels', getattr(preprocessor, 'bgr_to_rgb', False))
        return cls(preprocessor.mean.flatten().tolist(), preprocessor.std.flatten().tolist(), swap)

    def describe(self) -> dict[str, Any]:
        """``{'mean', 'std', 'bgr_to_rgb'}`` as plain lists/bools (stored in the ONNX metadata)."""
        return dict(mean=self.mean.flatten().tolist(), std=self.std.flatten().tolist(),
                    bgr_to_rgb=self.bgr_to_rgb)

    def forward(self, x: Tensor) -> Tensor:
        x = x.float()
        if self.bgr_to_rgb:
            x = x.flip(1)
        return (x - self.mean) / self.std


class PoseExportModule(nn.Module):
    """The exported pose graph: ``[preprocess] -> network [+ flip test] -> [head.decode]``.

    Input: (B, 3, H, W) uint8 BGR crops with ``preprocess``, else float normalised crops.
    Output: the head outputs (a Tensor or tuple) without ``with_decode``, else ``(keypoints (B, K, 2)
    input-crop px, scores (B, K))``.

    Args:
        network: the estimator; ``network(x)`` gives head outputs and ``network.head`` has ``decode``
            and ``flip_merge``.
        flip_indices: when given, the graph also runs the horizontally flipped crop and merges both with
            ``head.flip_merge(outputs, flipped, flip_indices, test_cfg)``.
    """

    def __init__(self, network: nn.Module, preprocess: Preprocess | None = None,
                 with_decode: bool = False, flip_indices: Sequence[int] | None = None,
                 test_cfg: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.network = network
        self.preprocess = preprocess
        self.with_decode = with_decode
        self.flip_indices = list(flip_indices) if flip_indices is not None else None
        self.test_cfg = dict(test_cfg or {})

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        if self.preprocess is not None:
            x = self.preprocess(x)
        outputs = self.network(x)
        if self.flip_indices is not None:
            flipped = self.network(x.flip(-1))
            outputs = self.network.head.flip_merge(outputs, flipped, self.flip_indices, self.test_cfg)
        if not self.with_decode:
            return outputs
        return self.network.head.decode(outputs)


class DetectorExportModule(nn.Module):
    """The exported detector graph: ``[preprocess] -> network`` with outputs flattened to
    ``(cls_score_0, ..., cls_score_{L-1}, bbox_pred_0, ..., bbox_pred_{L-1})``.

    ``network(x)`` returns ``(cls_scores, bbox_preds)`` per level (RTMDet: (B, C, h, w) logits and
    (B, 4, h, w) distances in input px); box decoding and NMS stay outside the graph.
    """

    def __init__(self, network: nn.Module, preprocess: Preprocess | None = None) -> None:
        super().__init__()
        self.network = network
        self.preprocess = preprocess

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if self.preprocess is not None:
            x = self.preprocess(x)
        cls_scores, bbox_preds = self.network(x)
        return (*cls_scores, *bbox_preds)
