"""Top-down box geometry for a whole batch on its device: the per-sample steps ``GetBBoxCenterScale``,
``RandomFlip``, ``RandomHalfBody``, ``RandomBBoxTransform`` and ``TopdownAffine`` (its matrices and
keypoints) given the parameters drawn on the loader side.

Same arithmetic as the per-sample transforms (float32 boxes and keypoints, float64 matrices rounded to
float32 like ``structures.bbox.get_warp_matrix``). Flip codes: 0 none, 1 horizontal, 2 vertical,
3 diagonal (:data:`FLIP_CODES`). Constants enter as Python numbers (multiplications, comparisons,
additions: exact as with numpy) or as device tensors made by a fill (divisions, which CUDA turns into
a multiplication by the reciprocal when the divisor is a host number): no host-to-device copy.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

FLIP_CODES = {None: 0, 'horizontal': 1, 'vertical': 2, 'diagonal': 3}


@dataclass
class CropGeometry:
    """Per-sample crop geometry of a batch (B samples, K keypoints).

    Attributes:
        bbox: (B, 4) xyxy box in the flipped image's px (``meta['bbox']``).
        center, scale: (B, 2) final crop box centre and size (w, h) px, aspect ratio fixed.
        keypoints: (B, K, 2) flipped keypoints, image px; visible: (B, K) their visibility.
        image_to_crop: (B, 3, 3) float64 affine from the original (unflipped) image px to crop px.
        crop_keypoints: (B, K, 2) float32 keypoints in crop px.
    """

    bbox: torch.Tensor
    center: torch.Tensor
    scale: torch.Tensor
    keypoints: torch.Tensor
    visible: torch.Tensor
    image_to_crop: torch.Tensor
    crop_keypoints: torch.Tensor


def flip_matrices(flip: torch.Tensor, img_hw: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) float64 affines from original to flipped image px (``x -> w - 1 - x``), flip codes (B,)."""
    b = flip.shape[0]
    mat = torch.eye(3, dtype=torch.float64, device=flip.device).repeat(b, 1, 1)
    for axis, codes in ((0, (1, 3)), (1, (2, 3))):
        on = (flip == codes[0]) | (flip == codes[1])
        size = img_hw[:, 1 - axis].to(torch.float64)
        mat[:, axis, axis] = torch.where(on, -1.0, 1.0)
        mat[:, axis, 2] = torch.where(on, size - 1, 0.0)
    return mat


def _flip_points(points: torch.Tensor, flip: torch.Tensor, img_hw: torch.Tensor) -> torch.Tensor:
    """Mirror (B, ..., 2) points: x -> w - 1 - x (horizontal, diagonal), y -> h - 1 - y (vertical too)."""
    out = points.clone()
    extra = (1,) * (points.dim() - 2)
    for axis, codes in ((0, (1, 3)), (1, (2, 3))):
        on = ((flip == codes[0]) | (flip == codes[1])).view(-1, *extra)
        size = img_hw[:, 1 - axis].to(points.dtype).view(-1, *extra)
        out[..., axis] = torch.where(on, size - 1 - points[..., axis], points[..., axis])
    return out


def flip_annotations(bbox: torch.Tensor, keypoints: torch.Tensor, visible: torch.Tensor,
                     flip_indices: torch.Tensor, flip: torch.Tensor, img_hw: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``RandomFlip`` on boxes (B, 4) xyxy, keypoints (B, K, 2) and visibility (B, K) of images (B, 2) (h, w).

    Joints are swapped with ``flip_indices`` (B, K) except for diagonal flips (as
    ``structures.keypoint.flip_keypoints``). Returns the flipped (bbox, keypoints, visible).
    """
    corners = _flip_points(bbox.view(-1, 2, 2), flip, img_hw)
    flipped_box = torch.cat([torch.minimum(corners[:, 0], corners[:, 1]),
                             torch.maximum(corners[:, 0], corners[:, 1])], dim=1)
    swap = ((flip == 1) | (flip == 2))[:, None]
    order = torch.where(swap, flip_indices, torch.arange(flip_indices.shape[1], device=flip.device))
    keypoints = _flip_points(torch.gather(keypoints, 1, order[..., None].expand_as(keypoints)), flip, img_hw)
    return flipped_box, keypoints, torch.gather(visible, 1, order)


def half_body_boxes(keypoints: torch.Tensor, selected: torch.Tensor, center: torch.Tensor,
                    scale: torch.Tensor, padding: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``RandomHalfBody``: where ``selected`` (B, K) picks joints, the box becomes their mean (centre)
    and extent times ``padding`` (size); other samples keep ``center``/``scale`` (B, 2)."""
    chosen = selected.any(dim=1, keepdim=True)
    count = selected.sum(dim=1, keepdim=True).clamp(min=1).to(keypoints.dtype)
    mask = selected[..., None]
    mean = torch.where(mask, keypoints, 0.0).sum(dim=1) / count
    high = torch.where(mask, keypoints, float('-inf')).amax(dim=1)
    low = torch.where(mask, keypoints, float('inf')).amin(dim=1)
    extent = torch.where(chosen, (high - low) * padding, 0.0)
    return torch.where(chosen, mean, center), torch.where(chosen, extent, scale)


def fix_aspect_ratio(scale: torch.Tensor, aspect_ratio: float) -> torch.Tensor:
    """Enlarge (B, 2) sizes (w, h) so that w / h == aspect_ratio (``structures.bbox.fix_aspect_ratio``)."""
    w, h = scale[:, 0:1], scale[:, 1:2]
    return torch.where(w > h * aspect_ratio, torch.cat([w, w / aspect_ratio], 1),
                       torch.cat([h * aspect_ratio, h], 1))


def warp_matrices(center: torch.Tensor, scale: torch.Tensor, rotation: torch.Tensor,
                  output_size: tuple[int, int], use_udp: bool) -> torch.Tensor:
    """(B, 2, 3) float32 crop affines (image px -> crop px) of boxes (B, 2) rotated by (B,) degrees,
    as ``get_warp_matrix`` / ``get_udp_warp_matrix`` for each sample."""
    c, s = center.double(), scale.double()
    rad = torch.deg2rad(rotation.double())
    cs, sn = torch.cos(rad), torch.sin(rad)
    w, h = output_size
    if use_udp:
        sx, sy = (w - 1) / s[:, 0], (h - 1) / s[:, 1]
        lin = torch.stack([torch.stack([cs * sx, -sn * sx], -1), torch.stack([sn * sy, cs * sy], -1)], 1)
        origin = torch.stack([0.5 * s[:, 0] * sx, 0.5 * s[:, 1] * sy], -1)
        trans = origin - (lin @ c[..., None])[..., 0]
    else:
        sx = w / s[:, 0]
        lin = torch.stack([torch.stack([cs * sx, sn * sx], -1), torch.stack([-sn * sx, cs * sx], -1)], 1)
        moved = (lin @ c[..., None])[..., 0]  # the box centre goes to the crop centre (w / 2, h / 2)
        trans = torch.stack([w * 0.5 - moved[:, 0], h * 0.5 - moved[:, 1]], -1)
    return torch.cat([lin, trans[..., None]], dim=2).float()


def crop_geometry(raw: dict, bbox_padding: float, half_body_padding: float, output_size: tuple[int, int],
                  use_udp: bool) -> CropGeometry:
    """Run the box steps of a recipe for a raw batch (tensors on the target device).

    ``bbox_padding``: of ``GetBBoxCenterScale``; ``half_body_padding``: of ``RandomHalfBody``;
    ``output_size`` (w, h) and ``use_udp``: of ``TopdownAffine``.

    ``raw`` holds ``bbox`` (B, 4) xyxy, ``keypoints`` (B, K, 2), ``keypoints_visible`` (B, K),
    ``flip_indices`` (B, K), ``img_hw`` (B, 2) and the drawn ``flip`` (B,) codes, ``half_body``
    (B, K) bool, ``shift`` (B, 2) in box sizes, ``scale`` (B,) factors, ``rotation`` (B,) degrees.
    """
    img_hw = raw['img_hw']
    center = (raw['bbox'][:, 2:4] + raw['bbox'][:, 0:2]) * 0.5
    scale = (raw['bbox'][:, 2:4] - raw['bbox'][:, 0:2]) * bbox_padding
    center = _flip_points(center, raw['flip'], img_hw)
    bbox, keypoints, visible = flip_annotations(raw['bbox'], raw['keypoints'], raw['keypoints_visible'],
                                                raw['flip_indices'], raw['flip'], img_hw)
    center, scale = half_body_boxes(keypoints, raw['half_body'], center, scale, half_body_padding)
    center = center + raw['shift'] * scale
    scale = scale * raw['scale'][:, None]
    w, h = output_size
    scale = fix_aspect_ratio(scale, w / h)
    mat = warp_matrices(center, scale, raw['rotation'], output_size, use_udp)
    crop_keypoints = keypoints @ mat[:, :, :2].transpose(1, 2) + mat[:, None, :, 2]
    full = torch.nn.functional.pad(mat.double(), (0, 0, 0, 1))  # last row (0, 0, 1)
    full[:, 2, 2].fill_(1.0)
    return CropGeometry(bbox=bbox, center=center, scale=scale, keypoints=keypoints, visible=visible,
                        image_to_crop=full @ flip_matrices(raw['flip'], img_hw),
                        crop_keypoints=crop_keypoints)
