"""A picture of one training batch as the network gets it: the augmented input crops with the keypoints
their targets encode, drawn in the dataset's colours."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from visualization.drawing import draw_pose, put_label, tile_mosaic


def target_keypoints(targets: Mapping[str, torch.Tensor],
                     input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The keypoints a batch's targets encode, read back without a codec.

    Args:
        targets: ``pose_collate`` targets: ``keypoint_labels`` (B, K, 2) normalised by the input size
            (regression codecs), or ``keypoint_x_labels`` / ``keypoint_y_labels`` (B, K, bins) (SimCC),
            or ``heatmaps`` (B, K, h, w); ``keypoint_weights`` (B, K) when present.
        input_size: (w, h) of the input crop in px.

    Returns:
        keypoints (B, K, 2) input-crop px (heatmap / SimCC targets to the resolution of their bins) and
        weights (B, K) (0 = no target for that keypoint).
    """
    w, h = input_size
    if 'keypoint_labels' in targets:
        kpts = targets['keypoint_labels'].float().cpu().numpy()[..., :2] * np.array([w, h])
    elif 'keypoint_x_labels' in targets:
        x, y = targets['keypoint_x_labels'].float(), targets['keypoint_y_labels'].float()
        kpts = torch.stack([x.argmax(-1) * (w / x.shape[-1]), y.argmax(-1) * (h / y.shape[-1])], -1)
        kpts = kpts.cpu().numpy()
    elif 'heatmaps' in targets:
        maps = targets['heatmaps'].float()
        flat = maps.flatten(2).argmax(-1)
        hh, hw = maps.shape[-2:]
        kpts = torch.stack([(flat % hw) * (w / hw), (flat // hw) * (h / hh)], -1).cpu().numpy()
    else:
        raise KeyError(f'target_keypoints: no keypoint target among {sorted(targets)} (expected '
                       'keypoint_labels, keypoint_x_labels/keypoint_y_labels or heatmaps)')
    weights = targets.get('keypoint_weights')
    weights = (np.ones(kpts.shape[:2], np.float32) if weights is None
               else weights.float().cpu().numpy().reshape(kpts.shape[:2]))
    return kpts, weights


def train_batch_picture(batch: Mapping[str, Any], dataset_meta: Mapping[str, Any],
                        max_images: int = 16) -> np.ndarray:
    """A mosaic of the first ``max_images`` crops of a ``pose_collate`` batch (uint8 (B, 3, H, W) BGR
    ``inputs``) with their target keypoints and skeleton, each labelled with its image id; BGR uint8,
    up to 8 crops per row at the input size."""
    inputs = batch['inputs'][:max_images]
    h, w = inputs.shape[-2:]
    kpts, weights = target_keypoints({k: v[:max_images] for k, v in batch['targets'].items()}, (w, h))
    img_ids = batch['meta'].get('img_id')
    crops = []
    for i, crop in enumerate(inputs.permute(0, 2, 3, 1).cpu().numpy()):
        drawn = draw_pose(np.ascontiguousarray(crop), [{'keypoints': kpts[i], 'keypoint_scores': weights[i]}],
                          dataset_meta, kpt_thr=0.0, radius=2, thickness=1, alpha=1.0)
        if img_ids is not None:
            put_label(drawn, f'img {int(img_ids[i])}', scale=0.4)
        crops.append(drawn)
    return tile_mosaic(crops, (w, h), cols=min(8, len(crops)))
