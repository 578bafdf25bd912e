"""RTMDet: single-stage detector = CSPNeXt backbone + CSPNeXtPAFPN neck + RTMDetSepBNHead."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from models.data_preprocessor import PoseDataPreprocessor
from utils.registry import MODELS


@MODELS.register_module()
class DetDataPreprocessor(PoseDataPreprocessor):
    """MMDetection's name for the same normalisation, with RTMDet's default mean/std (BGR order).

    ``pad_size_divisor``, ``pad_value`` and ``batch_augments`` are accepted for config compatibility;
    padding is done on the image by :class:`models.detection.det_transforms.DetTestTransform`.
    """

    def __init__(self, mean: Sequence[float] = (103.53, 116.28, 123.675),
                 std: Sequence[float] = (57.375, 57.12, 58.395), bgr_to_rgb: bool = False,
                 pad_size_divisor: int = 1, pad_value: float = 0, batch_augments: object = None) -> None:
        super().__init__(mean, std, bgr_to_rgb=bgr_to_rgb)


@MODELS.register_module()
class RTMDet(nn.Module):
    """Backbone + neck + dense head, with MMDetection's submodule names (``backbone``, ``neck``,
    ``bbox_head``) so its checkpoints load unchanged.

    ``forward(x (B, 3, H, W) normalised) -> (cls_scores, bbox_preds)`` per level (network only).
    ``init_cfg`` and ``train_cfg`` are accepted for MMDetection config compatibility.
    """

    def __init__(self, backbone: Mapping, neck: Mapping, bbox_head: Mapping,
                 data_preprocessor: Mapping | None = None, train_cfg: Mapping | None = None,
                 test_cfg: Mapping | None = None, init_cfg: Mapping | None = None) -> None:
        super().__init__()
        self.data_preprocessor = MODELS.build(dict(data_preprocessor or {'type': 'DetDataPreprocessor'}),
                                              cfg_path='data_preprocessor')
        self.backbone = MODELS.build(backbone, cfg_path='backbone')
        self.neck = MODELS.build(neck, cfg_path='neck')
        head_args = {'test_cfg': dict(test_cfg)} if test_cfg is not None else {}
        self.bbox_head = MODELS.build(bbox_head, cfg_path='bbox_head', **head_args)

    def forward(self, x: Tensor) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """Normalised (B, 3, H, W) images -> the head's per-level (class logits, box distances)."""
        return self.bbox_head(self.neck(self.backbone(x)))

    @torch.no_grad()
    def predict(self, inputs: Tensor, img_metas: Sequence[Mapping]) -> list[dict[str, Tensor]]:
        """Detect objects in a batch of prepared images.

        Args:
            inputs: (B, 3, H, W) uint8 BGR, resized and padded by the test transform.
            img_metas: per image ``img_shape`` and ``scale_factor`` from the test transform.

        Returns:
            per image ``{'bboxes': (K, 4) xyxy original-image px, 'scores': (K,), 'labels': (K,)}``.
        """
        cls_scores, bbox_preds = self(self.data_preprocessor(inputs))
        return self.bbox_head.predict_by_feat(cls_scores, bbox_preds, img_metas)
