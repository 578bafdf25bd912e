"""Bounding-box geometry: format conversions, flipping and the top-down crop affine.

Boxes are ``xyxy`` (left, top, right, bottom) in image pixels unless named ``*_xywh``;
``center``/``scale`` are the box centre (x, y) and size (w, h) in image pixels.
"""
from __future__ import annotations

import math

import numpy as np

FLIP_DIRECTIONS = ('horizontal', 'vertical', 'diagonal')


def check_flip_direction(direction: str) -> None:
    """Raise a ValueError unless ``direction`` is one of :data:`FLIP_DIRECTIONS`."""
    if direction not in FLIP_DIRECTIONS:
        raise ValueError(f'direction must be one of {FLIP_DIRECTIONS}, got {direction!r}')


def bbox_xyxy2xywh(bbox_xyxy: np.ndarray) -> np.ndarray:
    """(N, 4[+]) xyxy -> (N, 4[+]) xywh; extra columns (e.g. a score) are kept."""
    out = np.array(bbox_xyxy, copy=True)
    out[..., 2] -= out[..., 0]
    out[..., 3] -= out[..., 1]
    return out


def bbox_xywh2xyxy(bbox_xywh: np.ndarray) -> np.ndarray:
    """(N, 4[+]) xywh -> (N, 4[+]) xyxy with ``x2 = x + w`` (MMPose 1.x convention)."""
    out = np.array(bbox_xywh, copy=True)
    out[..., 2] += out[..., 0]
    out[..., 3] += out[..., 1]
    return out


def bbox_xyxy2cs(bbox: np.ndarray, padding: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Box (4,) or (N, 4) xyxy -> (center, scale), each (2,) or (N, 2); scale = size * padding."""
    bbox = np.asarray(bbox)
    center = (bbox[..., 2:4] + bbox[..., 0:2]) * 0.5
    scale = (bbox[..., 2:4] - bbox[..., 0:2]) * padding
    return center, scale


def bbox_xywh2cs(bbox: np.ndarray, padding: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Box (4,) or (N, 4) xywh -> (center, scale), each (2,) or (N, 2)."""
    return bbox_xyxy2cs(bbox_xywh2xyxy(np.asarray(bbox, dtype=np.float64)), padding)


def bbox_cs2xyxy(center: np.ndarray, scale: np.ndarray, padding: float = 1.0) -> np.ndarray:
    """(center, scale) (2,) or (N, 2) -> xyxy box (4,) or (N, 4) of size ``scale / padding``."""
    wh = np.asarray(scale) / padding
    xy = np.asarray(center) - 0.5 * wh
    return np.concatenate([xy, xy + wh], axis=-1)


def flip_bbox(bbox: np.ndarray, image_size: tuple[int, int], bbox_format: str = 'xyxy',
              direction: str = 'horizontal') -> np.ndarray:
    """Mirror boxes inside an image of ``image_size`` (w, h); pixel ``x`` maps to ``w - 1 - x``.

    ``bbox_format``: 'xyxy' (..., 4), 'xywh' (..., 4; only x/y move) or 'center' (..., 2).
    ``direction``: 'horizontal', 'vertical' or 'diagonal'.
    """
    if bbox_format not in ('xyxy', 'xywh', 'center'):
        raise ValueError(f"bbox_format must be 'xyxy', 'xywh' or 'center', got {bbox_format!r}")
    check_flip_direction(direction)
    w, h = image_size
    out = np.array(bbox, copy=True)
    axes = {'horizontal': ((0, w),), 'vertical': ((1, h),), 'diagonal': ((0, w), (1, h))}[direction]
    for axis, size in axes:
        if bbox_format == 'xyxy':
            out[..., axis] = size - 1 - bbox[..., axis + 2]
            out[..., axis + 2] = size - 1 - bbox[..., axis]
        else:
            out[..., axis] = size - 1 - bbox[..., axis]
    return out


def fix_aspect_ratio(bbox_scale: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """Enlarge (N, 2) box sizes (w, h) so that w / h == aspect_ratio, never shrinking a side."""
    w, h = bbox_scale[..., 0:1], bbox_scale[..., 1:2]
    return np.where(w > h * aspect_ratio, np.concatenate([w, w / aspect_ratio], axis=-1),
                    np.concatenate([h * aspect_ratio, h], axis=-1))


def get_warp_matrix(center: np.ndarray, scale: np.ndarray, rot: float, output_size: tuple[int, int],
                    shift: tuple[float, float] = (0.0, 0.0), inv: bool = False,
                    fix_aspect_ratio: bool = True) -> np.ndarray:
    """2x3 float32 affine mapping the rotated box (center, scale (w, h), ``rot`` degrees,
    counter-clockwise) onto an output of ``output_size`` (w, h); ``inv`` gives output -> image.

    The box centre lands on the output centre ``(w/2, h/2)`` and the box width spans the output
    width (the MMPose / HRNet convention, not the unbiased UDP one). ``shift`` moves the centre by
    a fraction of the box size. Without ``fix_aspect_ratio`` both axes scale independently.
    """
    center = np.asarray(center, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    src_w, src_h = float(scale[0]), float(scale[1])
    dst_w, dst_h = float(output_size[0]), float(output_size[1])
    rad = math.radians(float(rot))
    cs, sn = math.cos(rad), math.sin(rad)
    sx = dst_w / src_w
    sy = sx if fix_aspect_ratio else dst_h / src_h
    c = center + scale * np.asarray(shift, dtype=np.float64)
    # x_out = diag(sx, sy) R(rot)^T (x - c) + output centre: the box turns by -rot in the output.
    lin = np.array([[cs * sx, sn * sx], [-sn * sy, cs * sy]])
    trans = np.array([dst_w * 0.5, dst_h * 0.5]) - lin @ c
    mat = np.concatenate([lin, trans[:, None]], axis=1)
    if inv:
        mat = invert_affine(mat)
    return mat.astype(np.float32)


def get_udp_warp_matrix(center: np.ndarray, scale: np.ndarray, rot: float,
                        output_size: tuple[int, int]) -> np.ndarray:
    """2x3 float32 affine of UDP (Huang et al., CVPR 2020): the box spans ``output_size - 1`` pixel
    intervals, so box edges map onto output pixel centres 0 and ``w - 1``.
    """
    center = np.asarray(center, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    rad = math.radians(float(rot))
    cs, sn = math.cos(rad), math.sin(rad)
    sx = (output_size[0] - 1) / scale[0]
    sy = (output_size[1] - 1) / scale[1]
    lin = np.array([[cs * sx, -sn * sx], [sn * sy, cs * sy]])
    trans = np.array([0.5 * scale[0] * sx, 0.5 * scale[1] * sy]) - lin @ center
    return np.concatenate([lin, trans[:, None]], axis=1).astype(np.float32)


def invert_affine(mat: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix (float64 2x3)."""
    mat = np.asarray(mat, dtype=np.float64)
    lin_inv = np.linalg.inv(mat[:, :2])
    return np.concatenate([lin_inv, (-lin_inv @ mat[:, 2])[:, None]], axis=1)
