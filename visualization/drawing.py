"""Drawing pose results on BGR images: skeleton and keypoints in the dataset's colours, boxes with scores;
tiling pictures into a mosaic."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

BOX_COLOR = (0, 255, 0)  # BGR green, as MMPose's visualizer


def _bgr(colors: Any, count: int, default: Sequence[int]) -> list[tuple[int, int, int]]:
    """Metainfo colours (RGB, as MMPose) as BGR tuples, one per item (the default when missing)."""
    if colors is None or len(colors) == 0:
        colors = [default]
    arr = np.asarray(colors, dtype=np.int64).reshape(-1, 3)
    if len(arr) == 1:
        arr = np.repeat(arr, count, axis=0)
    return [tuple(int(c) for c in rgb[::-1]) for rgb in arr]


def draw_pose(img: np.ndarray, instances: Sequence[Mapping[str, Any]], dataset_meta: Mapping[str, Any],
              kpt_thr: float = 0.3, radius: int = 3, thickness: int = 1, alpha: float = 0.8,
              draw_bbox: bool = False, show_kpt_idx: bool = False,
              color: tuple[int, int, int] | None = None) -> np.ndarray:
    """Draw pose instances on a copy of a BGR image.

    Args:
        img: (H, W, 3) uint8 BGR.
        instances: dicts with ``keypoints`` (K, 2) image px, ``keypoint_scores`` (K,), and for boxes
            ``bbox`` (4,) xyxy px and ``bbox_score``.
        dataset_meta: parsed metainfo: ``num_keypoints``, ``skeleton_links``, ``skeleton_link_colors``,
            ``keypoint_colors`` (RGB).
        kpt_thr: keypoints scoring at or below it (and links touching them) are not drawn.
        radius, thickness: keypoint radius and line width in px for a 1280 px image; scaled up for
            larger images so the drawing stays readable.
        alpha: opacity of the drawing over the image (1 = opaque).
        draw_bbox: draw boxes with their scores; show_kpt_idx: write each keypoint's index.
        color: one BGR colour for every link and keypoint instead of the metainfo's (e.g. for ground
            truth beside a prediction); its keypoints are drawn as rings.

    Returns:
        the drawn (H, W, 3) uint8 BGR image.
    """
    h, w = img.shape[:2]
    scale = max(1.0, max(h, w) / 1280)
    radius, thickness = max(1, round(radius * scale)), max(1, round(thickness * scale))
    font_scale = 0.45 * scale
    links = [tuple(link) for link in dataset_meta.get('skeleton_links', [])]
    num_kpts = int(dataset_meta['num_keypoints'])
    link_colors = _bgr(dataset_meta.get('skeleton_link_colors') if color is None else [color[::-1]],
                       len(links), (96, 96, 255))
    kpt_colors = _bgr(dataset_meta.get('keypoint_colors') if color is None else [color[::-1]],
                      num_kpts, (255, 128, 0))
    fill = -1 if color is None else max(1, thickness)
    canvas = img.copy()
    for inst in instances:
        if draw_bbox and inst.get('bbox') is not None:
            x1, y1, x2, y2 = (int(round(float(v))) for v in np.asarray(inst['bbox']).reshape(4))
            cv2.rectangle(canvas, (x1, y1), (x2, y2), BOX_COLOR, thickness, cv2.LINE_AA)
            if inst.get('bbox_score') is not None:
                cv2.putText(canvas, f'{float(inst["bbox_score"]):.2f}', (x1 + 2, max(y1 - 4, 12)),
                            cv2.FONT_HERSHEY_SIMPLEX, font_scale, BOX_COLOR, max(1, thickness), cv2.LINE_AA)
        kpts = np.asarray(inst['keypoints'], dtype=np.float64).reshape(-1, 2)
        scores = np.asarray(inst['keypoint_scores'], dtype=np.float64).reshape(-1)
        visible = (scores > kpt_thr) & np.isfinite(kpts).all(axis=1)
        for (a, b), link_color in zip(links, link_colors):
            if a < len(kpts) and b < len(kpts) and visible[a] and visible[b]:
                cv2.line(canvas, tuple(np.round(kpts[a]).astype(int)), tuple(np.round(kpts[b]).astype(int)),
                         link_color, thickness + 1, cv2.LINE_AA)
        for i, (pt, kpt_color) in enumerate(zip(kpts, kpt_colors)):
            if not visible[i]:
                continue
            center = tuple(np.round(pt).astype(int))
            cv2.circle(canvas, center, radius, kpt_color, fill, cv2.LINE_AA)
            if show_kpt_idx:
                cv2.putText(canvas, str(i), (center[0] + radius, center[1] - radius),
                            cv2.FONT_HERSHEY_SIMPLEX, font_scale * 0.8, kpt_color, 1, cv2.LINE_AA)
    if alpha >= 1:
        return canvas
    return cv2.addWeighted(canvas, alpha, img, 1 - alpha, 0)


def put_label(img: np.ndarray, text: str, org: tuple[int, int] = (4, 16), scale: float = 0.45,
              color: tuple[int, int, int] = (255, 255, 255)) -> None:
    """Write ``text`` on a BGR image in place at ``org`` (left, baseline px), outlined in black to stay
    legible on any background."""
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def fit_scale(shape: Sequence[int], tile: tuple[int, int]) -> float:
    """Factor that fits an image of ``shape`` (h, w, ...) inside a ``tile`` (w, h) keeping its aspect."""
    return min(tile[0] / shape[1], tile[1] / shape[0])


def tile_mosaic(images: Sequence[np.ndarray], tile: tuple[int, int], cols: int | None = None,
                background: int = 32) -> np.ndarray:
    """Tile BGR uint8 images row by row into one (rows * tile_h, cols * tile_w, 3) image; each is
    resized to fit its ``tile`` (w, h) keeping its aspect ratio and centred on a ``background`` grey.
    ``cols`` defaults to about sqrt(2n) (wider than tall)."""
    if not images:
        raise ValueError('tile_mosaic: no images')
    n = len(images)
    cols = cols or min(n, max(1, math.ceil(math.sqrt(2 * n))))
    rows = math.ceil(n / cols)
    tw, th = tile
    out = np.full((rows * th, cols * tw, 3), background, np.uint8)
    for i, img in enumerate(images):
        if img.shape[:2] != (th, tw):
            s = fit_scale(img.shape, tile)
            size = (max(1, min(tw, round(img.shape[1] * s))), max(1, min(th, round(img.shape[0] * s))))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        r, c = divmod(i, cols)
        y, x = r * th + (th - img.shape[0]) // 2, c * tw + (tw - img.shape[1]) // 2
        out[y:y + img.shape[0], x:x + img.shape[1]] = img
    return out

