"""DeviceTopdownPipeline: turn a raw batch into the training batch on the device, per batch.

Decode (batched, on its own stream), one non-blocking upload of the raw batch's numeric part, box
geometry, warps grouped by image size (flip folded in), photometric augmentations on the samples
whose coins chose them, and codec targets. The result has the layout of
``datasets.collate.pose_collate``: ``inputs`` uint8 (B, 3, H, W) BGR, ``targets`` {name: float32
(B, ...)}, ``meta`` {name: (B, ...) tensor or list[str]}, all tensors on the device.

Per batch the host only reads what the loader worker already wrote (sizes, group keys); nothing
is read back from the device and the only host-to-device copy is the upload, so on CUDA the
producer thread queues a batch without waiting for the device.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from datasets.batched.affine_crop import sampling_grids, to_uint8, warp_group
from datasets.batched.geometry import CropGeometry, crop_geometry
from datasets.batched.jpeg_decode import JpegDecoder, size_groups
from datasets.batched.photometric import Group, apply_groups
from datasets.batched.raw_batch import RawBatch, field_views, host_fields, photometric_field
from datasets.batched.recipe import BatchedRecipe
from datasets.batched.targets import device_values, encode_targets
from datasets.image_io import ImageLoadError
from datasets.transforms.formatting import STR_META_KEYS, pack_meta

logger = logging.getLogger('mmpose_clean.datasets')  # a child of utils.logger's logger: in train.log

Fields = dict[str, torch.Tensor]


def _take(raw: RawBatch, index: list[int]) -> RawBatch:
    """The raw batch with sample i replaced by sample ``index[i]`` (host buffer, before its upload;
    photometric groups stay with their positions)."""
    out = dict(raw)
    for view in host_fields(raw, raw['sample_fields']).values():
        view[:] = view[index]
    for key in ('jpeg', 'pixels', *STR_META_KEYS):
        out[key] = [raw[key][i] for i in index]
    out['key'] = raw['key'][index]
    return out


class DeviceTopdownPipeline:
    """The batched top-down training pipeline, run per batch on ``device``.

    Args:
        recipes: ``[stage 1]`` or ``[stage 1, stage 2]``; a raw batch names its ``stage``.
        device: where decoding, cropping, augmentation and targets run (any torch device).
        skip_bad_images: replace a sample whose image cannot be decoded by another sample of the
            batch (logged) instead of raising :class:`ImageLoadError` naming the file.
        warp_budget: most float32 values of images converted for one warp (default 2^28, 1 GiB);
            more images of one size are warped in several steps.

    The stages (``decode``, ``upload``, ``geometry``, ``canvas`` / ``crop``, ``augment``,
    ``targets``) are methods so that ``datasets.batched.profile`` can time them one by one.
    """

    def __init__(self, recipes: Sequence[BatchedRecipe], device: torch.device | str,
                 skip_bad_images: bool = False, warp_budget: int = 2 ** 28) -> None:
        self.recipes = list(recipes)
        self.device = torch.device(device)
        self.skip_bad_images = skip_bad_images
        self.warp_budget = warp_budget
        self.decoder = JpegDecoder(self.device)

    def decode(self, raw: RawBatch) -> tuple[RawBatch, list[torch.Tensor | None]]:
        """The decoded JPEGs (RGB uint8 (3, H, W) on the device; ``None`` for the other samples) and
        the raw batch, in which undecodable samples were replaced under ``skip_bad_images``."""
        spans = raw['jpeg']
        index = [i for i, span in enumerate(spans) if span is not None]
        decoded = self.decoder([raw['buffer'][spans[i][0]:spans[i][0] + spans[i][1]] for i in index])
        images: list[torch.Tensor | None] = [None] * len(spans)
        for i, img in zip(index, decoded):
            images[i] = img
        bad = [i for i, img in zip(index, decoded) if img is None]
        if not bad:
            return raw, images
        paths = ', '.join(raw['img_path'][i] for i in bad)
        good = [i for i in range(len(spans)) if i not in bad]
        if not self.skip_bad_images or not good:
            raise ImageLoadError(f'cannot decode image file {paths} (corrupt JPEG data)')
        logger.warning('cannot decode image file %s; replacing it by another sample of the batch '
                       '(skip_bad_images=True)', paths)
        replacement = [good[i % len(good)] if i in bad else i for i in range(len(spans))]
        return _take(raw, replacement), [images[i] for i in replacement]

    def upload(self, raw: RawBatch) -> tuple[torch.Tensor, Fields]:
        """The uploaded part of the raw batch's buffer on the device and its fields (views): one
        non-blocking copy (from memory the loader pinned, on CUDA). A copy on the CPU too, so that
        no output reads the raw buffer, which its loader worker may reuse once the batch is made."""
        buffer = raw['buffer'][:raw['upload_bytes']].to(self.device, non_blocking=True, copy=True)
        return buffer, field_views(buffer, raw['fields'])

    @staticmethod
    def images(raw: RawBatch, buffer: torch.Tensor, decoded: list[torch.Tensor | None]) -> list[torch.Tensor]:
        """Every sample's RGB uint8 (3, H, W) image on the device: the decoded JPEGs, and views of the
        uploaded ``buffer`` for the images the loader decoded."""
        out = list(decoded)
        for i, span in enumerate(raw['pixels']):
            if span is not None:
                start, h, w = span
                out[i] = buffer[start:start + h * w * 3].view(h, w, 3).permute(2, 0, 1)
        return out

    def geometry(self, recipe: BatchedRecipe, fields: Fields) -> CropGeometry:
        half_body_padding = recipe.half_body.padding if recipe.half_body is not None else 1.0
        return crop_geometry(fields, recipe.bbox_padding, half_body_padding, recipe.affine.input_size,
                             recipe.affine.use_udp)

    def canvas(self, images: list[torch.Tensor], members: list[int]) -> torch.Tensor:
        """(n, 3, H, W) float32 copy of the same-size images at positions ``members``."""
        group = [images[i] for i in members]
        if self.device.type == 'cpu':  # converting while stacking: 6-10x faster on the CPU than after
            out = torch.empty((len(group), *group[0].shape), dtype=torch.float32)
            return torch.stack(group, out=out)
        return torch.stack(group).float()  # CUDA: two batched kernels (a mixed-dtype stack copies per image)

    def crop(self, recipe: BatchedRecipe, images: list[torch.Tensor], fields: Fields,
             geo: CropGeometry) -> torch.Tensor:
        """The crops, uint8 (B, 3, h, w) BGR: one warp per image size (within ``warp_budget``)."""
        grids = sampling_grids(geo.image_to_crop, fields['img_hw'], recipe.affine.input_size).unbind(0)
        samples: list[torch.Tensor | None] = [None] * len(images)
        for members in size_groups(images, self.warp_budget):
            warped = warp_group(self.canvas(images, members), [grids[i] for i in members])
            for i, crop in zip(members, warped.unbind(0)):
                samples[i] = crop
        return to_uint8(torch.stack(samples)).flip(1)  # RGB -> BGR, as the per-sample OpenCV images

    def augment(self, recipe: BatchedRecipe, raw: RawBatch, fields: Fields,
                crops: torch.Tensor) -> torch.Tensor:
        """The photometric steps, each on the groups of samples the loader planned for it."""
        for j, (step, plan) in enumerate(zip(recipe.photometric, raw['photometric'])):
            groups = [Group(key, fields[photometric_field(j, k, 'index')] if has_index else None,
                            {name: fields[photometric_field(j, k, name)] for name in names})
                      for k, (key, has_index, names) in enumerate(plan)]
            crops = apply_groups(step, crops, groups)
        return crops

    def targets(self, recipe: BatchedRecipe, fields: Fields, geo: CropGeometry) -> dict[str, torch.Tensor]:
        joint_weights = fields['dataset_keypoint_weights']
        return encode_targets(recipe.codec, geo.crop_keypoints, geo.visible,
                              joint_weights if recipe.target.use_dataset_keypoint_weights else None)

    def meta(self, recipe: BatchedRecipe, raw: RawBatch, fields: Fields, geo: CropGeometry) -> dict[str, Any]:
        w, h = recipe.affine.input_size
        size = device_values((float(w), float(h)), torch.float32, self.device)
        return pack_meta({
            **{k: fields[k] for k in ('img_id', 'id', 'category_id', 'bbox_score', 'area', 'flip_indices')},
            **{k: list(raw[k]) for k in STR_META_KEYS},
            'bbox': geo.bbox, 'bbox_center': geo.center, 'bbox_scale': geo.scale,
            'input_size': size.expand(len(geo.bbox), 2), 'keypoints': geo.keypoints,
            'keypoints_visible': geo.visible, 'ori_shape': fields['img_hw'].float(),
        })

    def __call__(self, raw: RawBatch) -> dict[str, Any]:
        """A raw batch (``datasets.batched.raw_batch``) -> the training batch on the device. The raw
        batch is left as it was, unless an undecodable sample was replaced (``skip_bad_images``): that
        rewrites its buffer."""
        recipe = self.recipes[raw['stage']]
        raw, decoded = self.decode(raw)
        buffer, fields = self.upload(raw)
        geo = self.geometry(recipe, fields)
        crops = self.crop(recipe, self.images(raw, buffer, decoded), fields, geo)
        crops = self.augment(recipe, raw, fields, crops)
        return {'inputs': crops, 'targets': self.targets(recipe, fields, geo),
                'meta': self.meta(recipe, raw, fields, geo)}

