"""DeviceTopdownPipeline: turn a raw batch into the training batch on the device, per batch.

Decode (batched), box geometry, one affine warp for all crops (flip folded in), photometric
augmentations and codec targets; the result has the layout of ``datasets.collate.pose_collate``:
``inputs`` uint8 (B, 3, H, W) BGR, ``targets`` {name: float32 (B, ...)}, ``meta`` {name: (B, ...)
tensor or list[str]}, all tensors on the device.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from datasets.batched.affine_crop import affine_crop
from datasets.batched.geometry import crop_geometry
from datasets.batched.jpeg_decode import decode_batch, paste_canvas
from datasets.batched.recipe import BatchedRecipe
from datasets.batched.targets import encode_targets
from datasets.image_io import ImageLoadError

logger = logging.getLogger('mmpose_clean.datasets')  # a child of utils.logger's logger: in train.log

_LIST_KEYS = ('jpeg', 'image', 'img_path', 'dataset_name')


def _take(raw: dict[str, Any], index: list[int]) -> dict[str, Any]:
    """The raw batch restricted to / reordered by ``index`` (sample positions)."""
    out = dict(raw)
    pos = torch.tensor(index)
    for key, value in raw.items():
        if key in _LIST_KEYS:
            out[key] = [value[i] for i in index]
        elif isinstance(value, torch.Tensor):
            out[key] = value[pos.to(value.device)]
    out['photometric'] = [{k: v[pos.to(v.device)] for k, v in params.items()}
                          for params in raw['photometric']]
    return out


class DeviceTopdownPipeline:
    """The batched top-down training pipeline, run per batch on ``device``.

    Args:
        recipes: ``[stage 1]`` or ``[stage 1, stage 2]``; a raw batch names its ``stage``.
        device: where decoding, cropping, augmentation and targets run (any torch device).
        skip_bad_images: replace a sample whose image cannot be decoded by another sample of the
            batch (logged) instead of raising :class:`ImageLoadError` naming the file.
        canvas_budget: most float32 values in one zero-padded canvas of decoded images (default
            2^28, 1 GiB); larger batches are cropped in several warps.
    """

    def __init__(self, recipes: Sequence[BatchedRecipe], device: torch.device | str,
                 skip_bad_images: bool = False, canvas_budget: int = 2 ** 28) -> None:
        self.recipes = list(recipes)
        self.device = torch.device(device)
        self.skip_bad_images = skip_bad_images
        self.canvas_budget = canvas_budget

    def _canvas_chunks(self, images: list[torch.Tensor]) -> list[slice]:
        """Consecutive runs of samples whose zero-padded canvas stays within ``canvas_budget`` values
        (one run for a batch of similar photos; large or mixed sizes are split to bound memory)."""
        chunks, start, height, width = [], 0, 0, 0
        for i, img in enumerate(images):
            h, w = max(height, img.shape[1]), max(width, img.shape[2])
            if i > start and (i + 1 - start) * 3 * h * w > self.canvas_budget:
                chunks.append(slice(start, i))
                start, h, w = i, img.shape[1], img.shape[2]
            height, width = h, w
        return [*chunks, slice(start, len(images))]

    def _decode(self, raw: dict[str, Any]) -> tuple[dict[str, Any], list[torch.Tensor]]:
        images = decode_batch(raw['jpeg'], raw['image'], self.device)
        bad = [i for i, img in enumerate(images) if img is None]
        if not bad:
            return raw, images
        paths = ', '.join(raw['img_path'][i] for i in bad)
        good = [i for i, img in enumerate(images) if img is not None]
        if not self.skip_bad_images or not good:
            raise ImageLoadError(f'cannot decode image file {paths} (corrupt JPEG data)')
        logger.warning('cannot decode image file %s; replacing it by another sample of the batch '
                       '(skip_bad_images=True)', paths)
        index = [i if img is not None else good[i % len(good)] for i, img in enumerate(images)]
        return _take(raw, index), [images[i] for i in index]

    def __call__(self, raw: dict[str, Any]) -> dict[str, Any]:
        """A raw batch (``datasets.batched.raw_batch``) -> the training batch on the device."""
        recipe = self.recipes[raw['stage']]
        raw, images = self._decode(raw)
        dev = {k: v.to(self.device, non_blocking=True) for k, v in raw.items() if isinstance(v, torch.Tensor)}
        half_body_padding = recipe.half_body.padding if recipe.half_body is not None else 1.0
        geo = crop_geometry(dev, recipe.bbox_padding, half_body_padding, recipe.affine.input_size,
                            recipe.affine.use_udp)
        crops = torch.cat([affine_crop(paste_canvas(images[s], self.device), geo.image_to_crop[s],
                                       recipe.affine.input_size) for s in self._canvas_chunks(images)])
        crops = crops.flip(1)  # RGB -> BGR, as the per-sample pipeline's OpenCV images
        for op, params in zip(recipe.photometric, raw['photometric']):
            crops = op.apply(crops, {k: v.to(self.device, non_blocking=True) for k, v in params.items()})
        use_joint_weights = recipe.target.use_dataset_keypoint_weights
        joint_weights = dev['dataset_keypoint_weights'] if use_joint_weights else None
        targets = encode_targets(recipe.codec, geo.crop_keypoints, geo.visible, joint_weights)
        w, h = recipe.affine.input_size
        meta = {
            'img_id': dev['img_id'], 'id': dev['id'], 'category_id': dev['category_id'],
            'img_path': list(raw['img_path']), 'dataset_name': list(raw['dataset_name']),
            'bbox': geo.bbox, 'bbox_score': dev['bbox_score'], 'bbox_center': geo.center,
            'bbox_scale': geo.scale,
            'input_size': torch.tensor([w, h], dtype=torch.float32, device=self.device).expand(len(crops), 2),
            'flip_indices': dev['flip_indices'], 'keypoints': geo.keypoints, 'keypoints_visible': geo.visible,
            'area': dev['area'], 'ori_shape': dev['img_hw'].float(),
        }
        return {'inputs': crops.contiguous(), 'targets': targets, 'meta': meta}
