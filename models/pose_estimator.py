"""Top-down pose estimator: backbone -> optional neck -> head, on person crops.

``forward`` is the bare network (traceable by torch.fx and exportable to ONNX); ``preprocess``,
``loss`` and ``predict`` wrap it for training and inference with MMPose 1.3.2 semantics (flip test,
codec decoding, crop -> image mapping). State-dict keys are ``backbone.*``, ``neck.*``, ``head.*``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.checkpoints import load_pretrained, pretrained_cfg
from structures.arrays import to_numpy
from utils.registry import MODELS

HeadOutputs = Tensor | tuple[Tensor, ...]
OptCfg = Mapping[str, Any] | None


@MODELS.register_module()
class TopdownPoseEstimator(nn.Module):
    """Backbone, neck, head and data preprocessor built from their configs.

    Args:
        backbone: backbone config (returns a tuple of feature maps).
        neck: optional neck config.
        head: head config; needs ``forward``, ``loss``, ``flip_merge`` and ``decode``.
        data_preprocessor: ``PoseDataPreprocessor`` config (default: no normalisation).
        train_cfg: passed to ``head.loss`` (e.g. ``compute_acc``).
        test_cfg: ``flip_test`` and the head's flip options (``shift_coords``, ``flip_mode``,
            ``shift_heatmap``).
        init_cfg: None, or ``dict(type='Pretrained', checkpoint=PATH[, prefix])`` loaded into the whole
            model by :meth:`init_weights` (after the submodules' own initialisation).
        metainfo: accepted for MMPose config compatibility; unused.
    """

    def __init__(self, backbone: Mapping[str, Any], neck: OptCfg = None, head: OptCfg = None,
                 data_preprocessor: OptCfg = None, train_cfg: OptCfg = None, test_cfg: OptCfg = None,
                 init_cfg: OptCfg = None, metainfo: OptCfg = None) -> None:
        super().__init__()
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck) if neck is not None else None
        self.head = MODELS.build(head) if head is not None else None
        self.data_preprocessor = MODELS.build(data_preprocessor or dict(type='PoseDataPreprocessor'))
        self.train_cfg = dict(train_cfg or {})
        self.test_cfg = dict(test_cfg or {})
        self.init_cfg = pretrained_cfg(init_cfg)
        self.register_load_state_dict_pre_hook(_drop_preprocessor_keys)

    def init_weights(self) -> None:
        """Initialise backbone, neck and head (each honours its own ``init_cfg``, e.g. a pretrained
        backbone), then load this model's ``init_cfg`` checkpoint if given."""
        for module in (self.backbone, self.neck, self.head):
            if module is not None and hasattr(module, 'init_weights'):
                module.init_weights()
        if self.init_cfg is not None:
            load_pretrained(self, self.init_cfg, cfg_key='model.init_cfg')

    def extract_feat(self, x: Tensor) -> tuple[Tensor, ...]:
        """Normalised images (B, 3, H, W) -> backbone (and neck) features."""
        feats = self.backbone(x)
        return self.neck(feats) if self.neck is not None else feats

    def forward(self, x: Tensor) -> HeadOutputs:
        """The network only: normalised images (B, 3, H, W) -> raw head outputs (no decoding, no loss);
        e.g. (B, K, 4) for RLE, ``(x (B, K, Wx), y (B, K, Wy))`` for SimCC, (B, K, h, w) heatmaps."""
        return self.head(self.extract_feat(x))

    def preprocess(self, inputs: Tensor) -> Tensor:
        """uint8 BGR images (B, 3, H, W) on any device -> normalised float on the model's device."""
        return self.data_preprocessor(inputs)

    def loss(self, inputs: Tensor, targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Losses for uint8 images (B, 3, H, W) and codec targets ({name: (B, ...)}, see the head).

        Returns a dict whose ``loss*`` entries are summed for backward and whose other entries (e.g.
        ``acc_pose``) are detached metrics. Losses are computed in fp32 even under autocast.
        """
        x = self.preprocess(inputs)
        device = x.device
        targets = {k: v.to(device, non_blocking=True) for k, v in targets.items()}
        return self.head.loss(self.forward(x), targets, self.train_cfg)

    @torch.no_grad()
    def predict(self, inputs: Tensor, meta: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Keypoints in original-image pixels for a batch of crops.

        Args:
            inputs: uint8 BGR crops (B, 3, H, W).
            meta: batch meta with ``input_size`` (B, 2) (w, h), ``bbox_center`` (B, 2), ``bbox_scale``
                (B, 2) in image px, and ``flip_indices`` (B, K) (or (K,)) when ``test_cfg.flip_test``.

        Returns:
            ``{'keypoints': (B, K, 2) float32 image px, 'keypoint_scores': (B, K) float32}``.
        """
        x = self.preprocess(inputs)
        if self.test_cfg.get('flip_test', False):
            if 'flip_indices' not in meta:
                raise KeyError("predict with test_cfg.flip_test=True needs meta['flip_indices']")
            flip_indices = torch.as_tensor(meta['flip_indices'])
            flip_indices = flip_indices[0] if flip_indices.ndim == 2 else flip_indices
            both = self.forward(torch.cat([x, x.flip(-1)]))
            batch = x.shape[0]
            if isinstance(both, Tensor):
                outputs, flipped = both[:batch], both[batch:]
            else:
                outputs, flipped = tuple(o[:batch] for o in both), tuple(o[batch:] for o in both)
            outputs = self.head.flip_merge(outputs, flipped, flip_indices, self.test_cfg)
        else:
            outputs = self.forward(x)
        keypoints, scores = self.head.decode(outputs)
        keypoints = crop_to_image(keypoints, meta['input_size'], meta['bbox_center'], meta['bbox_scale'])
        return {'keypoints': keypoints, 'keypoint_scores': scores.float().cpu().numpy()}


def crop_to_image(keypoints: Tensor, input_size: Any, center: Any, scale: Any) -> np.ndarray:
    """Map keypoints (B, K, 2) from input-crop px to image px: ``kpt / input_size * scale + center -
    scale / 2`` (MMPose's mapping; input_size (w, h), center and scale (B, 2) image px). Computed in
    float64, returned as float32 numpy."""
    kpts = keypoints.detach().cpu().double()
    size, center, scale = (torch.as_tensor(to_numpy(v), dtype=torch.float64).reshape(-1, 1, 2)
                           for v in (input_size, center, scale))
    return (kpts / size * scale + center - 0.5 * scale).float().numpy()


def _drop_preprocessor_keys(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Load hook: ignore ``data_preprocessor.*`` tensors (mean/std) that some MMPose files carry."""
    for key in [k for k in state_dict if k.startswith(prefix + 'data_preprocessor.')]:
        del state_dict[key]


def build_pose_estimator(cfg: Mapping[str, Any]) -> nn.Module:
    """Build a pose estimator (e.g. ``TopdownPoseEstimator``) from ``cfg.model``."""
    return MODELS.build(cfg, cfg_path='model')
