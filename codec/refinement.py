"""Sub-pixel refinement of arg-max keypoints (shift, DARK, UDP-DARK, SimCC-DARK) and the Gaussian
modulation they rely on.

Arithmetic follows MMPose 1.3.2 as it runs under NumPy 1.x (e.g. the DARK Taylor step in float64,
SimCC/UDP steps in float32), so refined coordinates agree with it to float rounding.
"""
from __future__ import annotations

import cv2
import numpy as np


def _rescale_to_max(blurred: np.ndarray, original: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Scale each map of ``blurred`` so its maximum equals that of ``original``.

    Where the blurred map's maximum is 0 (an all-zero map) it is left unscaled; MMPose produces
    NaN there (0 / 0).
    """
    orig_max = np.max(original, axis=axes, keepdims=True)
    blur_max = np.max(blurred, axis=axes, keepdims=True)
    ratio = np.divide(orig_max, blur_max, out=np.ones_like(blur_max), where=blur_max != 0)
    return blurred * ratio


def _blur_keeping_max(maps: np.ndarray, kernel: int, kernel_height: int) -> np.ndarray:
    """Blur each (H, W) map of ``maps`` (M, H, W) with a ``kernel`` wide, ``kernel_height`` high Gaussian
    (zero outside the map), then rescale it to its original maximum; same dtype (blurred in float32)."""
    if kernel % 2 != 1:
        raise ValueError(f'blur kernel size must be odd, got {kernel}')
    bx, by = (kernel - 1) // 2, (kernel_height - 1) // 2
    m, h, w = maps.shape
    # Zero-padded maps stacked into one tall image: the zero rows between two maps keep the kernel
    # of one map from reaching the next, so this equals blurring each padded map alone.
    padded = np.zeros((m, h + 2 * by, w + 2 * bx), dtype=np.float32)
    padded[:, by:by + h, bx:bx + w] = maps
    if m:
        padded = cv2.GaussianBlur(padded.reshape(m * (h + 2 * by), w + 2 * bx), (kernel, kernel_height), 0)
    blurred = padded.reshape(m, h + 2 * by, w + 2 * bx)[:, by:by + h, bx:bx + w].astype(maps.dtype)
    return _rescale_to_max(blurred, maps, (1, 2))


def gaussian_blur(heatmaps: np.ndarray, kernel: int = 11) -> np.ndarray:
    """Blur each heatmap with a ``kernel`` x ``kernel`` Gaussian (zero outside the map), keeping its maximum.

    Args:
        heatmaps: (K, H, W) heatmaps; not modified.
        kernel: odd Gaussian kernel size (sigma from OpenCV's rule 0.3 * ((kernel - 1) / 2 - 1) + 0.8).

    Returns:
        (K, H, W) modulated heatmaps, same dtype as the input (blurred in float32).
    """
    return _blur_keeping_max(heatmaps, kernel, kernel)


def gaussian_blur1d(simcc: np.ndarray, kernel: int = 11) -> np.ndarray:
    """Blur each SimCC vector with a 1-D Gaussian of odd size ``kernel`` (zero outside), keeping its maximum.

    Args:
        simcc: (N, K, W) SimCC scores; not modified.

    Returns:
        (N, K, W) modulated scores, same dtype as the input (blurred in float32).
    """
    n, k, w = simcc.shape
    return _blur_keeping_max(simcc.reshape(n * k, 1, w), kernel, 1).reshape(n, k, w)


def _gather(heatmaps: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``heatmaps[k, y, x]`` for (N, K) index arrays (k = keypoint index), indices clipped to the map."""
    k, h, w = heatmaps.shape
    kk = np.broadcast_to(np.arange(k), x.shape)
    return heatmaps[kk, np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)]


def refine_keypoints(keypoints: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """Move each arg-max location 0.25 px towards its higher neighbour (per axis).

    Args:
        keypoints: (N, K, 2) arg-max locations in heatmap px; not modified.
        heatmaps: (K, H, W).

    Returns:
        (N, K, 2) refined locations (same dtype). As in MMPose, x is refined only when
        1 < x < W - 1 and 0 < y < H, y only when 1 < y < H - 1 and 0 < x < W.
    """
    _, h, w = heatmaps.shape
    x, y = keypoints[..., 0].astype(int), keypoints[..., 1].astype(int)
    dx = np.where((x > 1) & (x < w - 1) & (y > 0) & (y < h),
                  _gather(heatmaps, x + 1, y) - _gather(heatmaps, x - 1, y), 0)
    dy = np.where((y > 1) & (y < h - 1) & (x > 0) & (x < w),
                  _gather(heatmaps, x, y + 1) - _gather(heatmaps, x, y - 1), 0)
    step = np.sign(np.stack((dx, dy), axis=-1)).astype(np.float32) * np.float32(0.25)
    out = keypoints.copy()
    out[..., :2] += step
    return out


def refine_keypoints_dark(keypoints: np.ndarray, heatmaps: np.ndarray,
                          blur_kernel_size: int) -> np.ndarray:
    """DARK: one Newton step on the log of the Gaussian-modulated heatmap (https://arxiv.org/abs/1910.06278).

    Args:
        keypoints: (N, K, 2) arg-max locations in heatmap px; not modified.
        heatmaps: (K, H, W); not modified.
        blur_kernel_size: odd kernel size of the modulation blur.

    Returns:
        (N, K, 2) refined locations (same dtype). Only locations with 1 < x < W - 2 and
        1 < y < H - 2 whose Hessian has a non-zero determinant move (as in MMPose).
    """
    _, h, w = heatmaps.shape
    logs = np.log(np.maximum(gaussian_blur(heatmaps, blur_kernel_size), 1e-10))
    x, y = keypoints[..., 0].astype(int), keypoints[..., 1].astype(int)
    inside = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2)

    def at(ox: int, oy: int) -> np.ndarray:
        return _gather(logs, x + ox, y + oy)

    f64 = np.float64
    dx = 0.5 * (at(1, 0) - at(-1, 0)).astype(f64)
    dy = 0.5 * (at(0, 1) - at(0, -1)).astype(f64)
    center2 = 2 * at(0, 0).astype(f64)
    dxx = 0.25 * (at(2, 0) - center2 + at(-2, 0))
    dyy = 0.25 * (at(0, 2) - center2 + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)).astype(f64)
    move = inside & (dxx * dyy - dxy ** 2 != 0)
    hessian = np.stack((np.stack((dxx, dxy), -1), np.stack((dxy, dyy), -1)), -2)
    hessian[~move] = np.eye(2)
    offset = -(np.linalg.inv(hessian) @ np.stack((dx, dy), -1)[..., None])[..., 0]
    out = keypoints.copy()
    out[..., :2] += np.where(move[..., None], offset, 0.0)  # float64 step, cast once (as MMPose)
    return out


def refine_keypoints_dark_udp(keypoints: np.ndarray, heatmaps: np.ndarray,
                              blur_kernel_size: int) -> np.ndarray:
    """UDP flavour of DARK (https://arxiv.org/abs/1911.07524): derivatives from the edge-padded log map.

    Args:
        keypoints: (N, K, 2) arg-max locations in heatmap px (-1 for empty maps); not modified.
        heatmaps: (K, H, W); not modified.
        blur_kernel_size: odd kernel size of the modulation blur.

    Returns:
        (N, K, 2) refined locations (same dtype). Finite for all-zero maps (MMPose returns NaN there).
    """
    k, h, w = heatmaps.shape
    logs = np.log(np.clip(gaussian_blur(heatmaps, blur_kernel_size), 1e-3, 50.))
    flat = np.pad(logs, ((0, 0), (1, 1), (1, 1)), mode='edge').ravel()
    index = keypoints[..., 0] + 1 + (keypoints[..., 1] + 1) * (w + 2)
    index = (index + (w + 2) * (h + 2) * np.arange(k)).astype(int)
    i_ = flat[index]
    ix1, ix1_ = flat[index + 1], flat[index - 1]
    iy1, iy1_ = flat[index + w + 2], flat[index - 2 - w]
    ix1y1, ix1_y1_ = flat[index + w + 3], flat[index - w - 3]
    derivative = np.stack((0.5 * (ix1 - ix1_), 0.5 * (iy1 - iy1_)), -1)[..., None]
    dxx = ix1 - 2 * i_ + ix1_
    dyy = iy1 - 2 * i_ + iy1_
    dxy = 0.5 * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_)
    hessian = np.stack((np.stack((dxx, dxy), -1), np.stack((dxy, dyy), -1)), -2)
    hessian = np.linalg.inv(hessian + np.finfo(np.float32).eps * np.eye(2))
    out = keypoints.copy()
    out -= np.einsum('...mn,...nk->...mk', hessian, derivative)[..., 0]
    return out


def refine_simcc_dark(keypoints: np.ndarray, simcc: np.ndarray, blur_kernel_size: int) -> np.ndarray:
    """DARK for one SimCC axis: a 1-D Newton step on the log of the modulated scores.

    Args:
        keypoints: (N, K) arg-max bins along the axis (-1 for non-positive scores); not modified.
        simcc: (N, K, W) scores along that axis; not modified.
        blur_kernel_size: odd kernel size of the modulation blur.

    Returns:
        (N, K) refined bins (same dtype).
    """
    logs = np.log(np.clip(gaussian_blur1d(simcc, blur_kernel_size), 1e-3, 50.))
    logs = np.pad(logs, ((0, 0), (0, 0), (2, 2)), mode='edge')
    px = (keypoints + 2.5).astype(np.int64)[..., None]

    def at(o: int) -> np.ndarray:
        return np.take_along_axis(logs, px + o, axis=-1)[..., 0]

    dx = 0.5 * (at(1) - at(-1))
    dxx = 1e-9 + 0.25 * (at(2) - 2 * at(0) + at(-2))
    return keypoints - (dx / dxx).astype(keypoints.dtype)
