"""PackPoseInputs: turn a transformed sample into {'inputs', 'targets', 'meta'} (the data contract)."""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from datasets.transforms.base import BaseTransform
from utils.registry import TRANSFORMS

logger = logging.getLogger('mmpose_clean.datasets')

# The meta layout of a sample and of a batch, for both input pipelines (per-sample and batched):
# these keys in this order; the int ones are int64, the str ones str, the rest float32.
META_KEYS = ('img_id', 'id', 'category_id', 'img_path', 'dataset_name', 'bbox', 'bbox_score',
             'bbox_center', 'bbox_scale', 'input_size', 'flip_indices', 'keypoints', 'keypoints_visible',
             'area', 'ori_shape')
INT_META_KEYS = ('img_id', 'id', 'category_id', 'flip_indices')
STR_META_KEYS = ('img_path', 'dataset_name')
# MMPose 1.3.2's default PackPoseInputs.meta_keys: a config that spells them out gets no warning.
MMPOSE_META_KEYS = ('id', 'img_id', 'img_path', 'category_id', 'crowd_index', 'ori_shape', 'img_shape',
                    'input_size', 'input_center', 'input_scale', 'flip', 'flip_direction', 'flip_indices',
                    'raw_ann_info', 'dataset_name')

# Codec outputs packed as targets; the instance-level ones ('keypoint_*', shaped (1, K, ...))
# lose their leading instance dim, heatmap-level ones ((K, H, W)) are kept as they are.
TARGET_KEYS = ('keypoint_labels', 'keypoint_weights', 'keypoint_x_labels', 'keypoint_y_labels',
               'heatmaps', 'heatmap_weights')


def _squeeze_instance(name: str, value: np.ndarray, key: str) -> np.ndarray:
    value = np.asarray(value)
    if value.ndim == 0 or value.shape[0] != 1:
        raise ValueError(f'{name}: {key} must have one instance (leading dim 1) in top-down mode, '
                         f'got shape {value.shape}')
    return value[0]


@TRANSFORMS.register_module()
class PackPoseInputs(BaseTransform):
    """Pack the sample for the model.

    Returns ``{'inputs': uint8 tensor (3, H, W) BGR, 'targets': {name: float32 tensor}, 'meta':
    {img_id, id, category_id, img_path, dataset_name, bbox (4,) xyxy, bbox_score (), bbox_center
    (2,), bbox_scale (2,), input_size (2,) (w, h), flip_indices (K,), keypoints (K, 2) image px,
    keypoints_visible (K,), area (), ori_shape (2,) (h, w)}}`` (numpy / Python values; the
    collate function makes tensors). Targets are the codec outputs in ``TARGET_KEYS`` present.

    Args:
        meta_keys: accepted for config compatibility with MMPose; the meta keys are fixed
            (:data:`META_KEYS`), so a value other than MMPose's default warns and is ignored.
        pack_transformed: accepted for config compatibility; ``True`` warns and is ignored.
    """

    def __init__(self, meta_keys: Sequence[str] | None = None, pack_transformed: bool = False) -> None:
        if meta_keys is not None and tuple(meta_keys) != MMPOSE_META_KEYS:
            logger.warning('PackPoseInputs: meta_keys is ignored; the meta keys are fixed: %s',
                           ', '.join(META_KEYS))
        if pack_transformed:
            logger.warning('PackPoseInputs: pack_transformed=True is ignored (the transformed keypoints '
                           'are packed as targets)')
        self.meta_keys = meta_keys
        self.pack_transformed = pack_transformed

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.ndim == 2:
            img = img[:, :, None]
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        targets = {}
        for key in TARGET_KEYS:
            if results.get(key) is None:
                continue
            value = results[key]
            if key.startswith('keypoint_'):
                value = _squeeze_instance('PackPoseInputs', value, key)
            targets[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        visible = np.asarray(results['keypoints_visible'], dtype=np.float32)
        if visible.ndim == 3:
            visible = visible[..., 0]
        h, w = results.get('ori_shape', results.get('img_shape', (0, 0)))
        input_size = results.get('input_size', (img.shape[1], img.shape[0]))
        meta = pack_meta({
            **instance_meta(results),
            'bbox': np.asarray(results['bbox'], dtype=np.float32).reshape(-1, 4)[0],
            'bbox_center': np.asarray(results['bbox_center'], dtype=np.float32).reshape(-1, 2)[0],
            'bbox_scale': np.asarray(results['bbox_scale'], dtype=np.float32).reshape(-1, 2)[0],
            'input_size': np.asarray(input_size, dtype=np.float32),
            'keypoints': np.asarray(results['keypoints'], dtype=np.float32)[0, :, :2],
            'keypoints_visible': visible[0],
            'ori_shape': np.asarray((h, w), dtype=np.float32),
        })
        return {'inputs': inputs, 'targets': targets, 'meta': meta}


def _first(value: Any) -> Any:
    return np.asarray(value).reshape(-1)[0]


def instance_meta(results: Mapping[str, Any]) -> dict[str, Any]:
    """The meta values of a sample that the top-down transforms leave unchanged, read from its data
    info or results: ``img_id``, ``id``, ``category_id`` (int; -1 / 1 when absent), ``img_path``,
    ``dataset_name`` (str), ``bbox_score`` and ``area`` (float32, of the first instance) and
    ``flip_indices`` (K,) int64."""
    return {
        'img_id': int(results.get('img_id', -1)),
        'id': int(results.get('id', -1)),
        'category_id': int(_first(results.get('category_id', 1))),
        'img_path': str(results.get('img_path') or ''),
        'dataset_name': str(results.get('dataset_name') or ''),
        'bbox_score': np.float32(_first(results.get('bbox_score', 1.0))),
        'area': np.float32(_first(results.get('area', 0.0))),
        'flip_indices': np.asarray(results['flip_indices'], dtype=np.int64),
    }


def pack_meta(values: Mapping[str, Any]) -> dict[str, Any]:
    """The meta dict of a sample (numpy / Python values) or of a batch ((B, ...) tensors and lists of
    str), in the layout both input pipelines share: exactly :data:`META_KEYS`, in that order."""
    missing = [k for k in META_KEYS if k not in values]
    extra = sorted(set(values) - set(META_KEYS))
    if missing or extra:
        raise KeyError(f'meta layout: missing {missing}, unexpected {extra}')
    return {k: values[k] for k in META_KEYS}
