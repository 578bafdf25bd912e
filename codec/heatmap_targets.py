"""Heatmap training targets: MSRA / DARK-unbiased / UDP Gaussians and UDP offset maps.

Each takes keypoints (N, K, 2) in heatmap px and visibility (N, K) and returns the target maps and
``keypoint_weights`` (N, K): a copy of the visibility (its dtype) where visible (>= 0.5) keypoints whose
Gaussian window misses the map entirely get 0. Keypoints with visibility < 0.5 draw nothing. Several
instances are merged with a per-pixel maximum. Values equal MMPose 1.3.2's (float32 arithmetic as it
runs under NumPy 1.x).
"""
from __future__ import annotations

import numpy as np

from codec.base import drawn_and_weights


def _labelled(keypoints_visible: np.ndarray) -> np.ndarray:
    return ~(keypoints_visible < 0.5)


def _windowed_gaussians(keypoints: np.ndarray, keypoints_visible: np.ndarray, heatmap_size: tuple[int, int],
                        sigma: np.ndarray, sub_pixel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Gaussians cut to a (2 * 3 sigma + 1)-px square window around ``int(keypoint + 0.5)``.

    ``sigma`` is (N,) per instance. With ``sub_pixel`` (UDP) the Gaussian is centred on the exact
    keypoint, else on the rounded one (MSRA). Returns heatmaps (K, H, W) float32 and weights (N, K).
    """
    w, h = heatmap_size
    radius = (sigma * 3)[:, None, None]  # (N, 1, 1)
    mu = (keypoints[..., :2] + 0.5).astype(np.int64)  # (N, K, 2)
    low = (mu - radius).astype(np.int64)  # left, top (truncated like MMPose)
    high = (mu + radius + 1).astype(np.int64)  # right, bottom (exclusive)
    lost = ((low >= [w, h]) | (high < 0)).any(axis=-1)
    on, weights = drawn_and_weights(keypoints_visible, lost)

    size = 2 * radius + 1  # window length (MMPose: np.arange(0, size))
    centre = size // 2  # window index of the Gaussian centre
    if sub_pixel:
        centre = centre + (keypoints[..., :2].astype(np.float64) - mu)
    centre = np.broadcast_to(centre, mu.shape).astype(np.float32)
    t = np.arange(int(np.ceil(size.max())) if size.size else 0)  # position inside the window
    d2, pos, inside = [], [], []
    for axis, limit in ((0, w), (1, h)):
        d2.append((t.astype(np.float32) - centre[..., axis, None]) ** 2)  # (N, K, S)
        pos.append(low[..., axis, None] + t)
        end = np.minimum(limit, high[..., axis, None])
        inside.append((t < size) & (pos[-1] >= 0) & (pos[-1] < end))
    two_var = (2 * sigma ** 2).astype(np.float32)[:, None, None, None]
    values = np.exp(-(d2[0][..., None, :] + d2[1][..., :, None]) / two_var)  # (N, K, S, S)
    mask = inside[0][..., None, :] & inside[1][..., :, None] & on[..., None, None]
    n, k = mu.shape[:2]
    flat_index = (np.arange(k)[:, None, None] * h + pos[1][..., :, None]) * w + pos[0][..., None, :]
    heatmaps = np.zeros(k * h * w, dtype=np.float32)
    for i in range(n):  # pixels are distinct within an instance; instances merge by maximum
        idx = flat_index[i][mask[i]]
        heatmaps[idx] = np.maximum(heatmaps[idx], values[i][mask[i]])
    return heatmaps.reshape(k, h, w), weights


def _as_instance_sigmas(sigma: float | tuple[float, ...] | np.ndarray, n: int) -> np.ndarray:
    sigma = np.asarray(sigma, dtype=np.float64)
    if sigma.ndim == 0:
        return np.full(n, float(sigma))
    if sigma.shape != (n,):
        raise ValueError(f'sigma must be one value or one per instance ({n}), got shape {sigma.shape}')
    return sigma


def generate_gaussian_heatmaps(heatmap_size: tuple[int, int], keypoints: np.ndarray,
                               keypoints_visible: np.ndarray,
                               sigma: float | tuple[float, ...] | np.ndarray
                               ) -> tuple[np.ndarray, np.ndarray]:
    """MSRA heatmaps: unnormalised Gaussians (peak 1) centred on ``int(keypoint + 0.5)``.

    Args:
        heatmap_size: (W, H).
        keypoints: (N, K, 2) heatmap px.
        keypoints_visible: (N, K).
        sigma: Gaussian sigma in heatmap px, one value or one per instance.

    Returns:
        heatmaps (K, H, W) float32 and keypoint_weights (N, K).
    """
    sigmas = _as_instance_sigmas(sigma, keypoints.shape[0])
    return _windowed_gaussians(keypoints, keypoints_visible, heatmap_size, sigmas, sub_pixel=False)


def generate_udp_gaussian_heatmaps(heatmap_size: tuple[int, int], keypoints: np.ndarray,
                                   keypoints_visible: np.ndarray,
                                   sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """UDP heatmaps (https://arxiv.org/abs/1911.07524): Gaussians (peak <= 1) centred on the exact keypoint,
    drawn in the window around ``int(keypoint + 0.5)``. Arguments and returns as
    :func:`generate_gaussian_heatmaps` (one ``sigma``)."""
    sigmas = _as_instance_sigmas(sigma, keypoints.shape[0])
    return _windowed_gaussians(keypoints, keypoints_visible, heatmap_size, sigmas, sub_pixel=True)


def generate_unbiased_gaussian_heatmaps(heatmap_size: tuple[int, int], keypoints: np.ndarray,
                                        keypoints_visible: np.ndarray,
                                        sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """DARK heatmaps (https://arxiv.org/abs/1910.06278): Gaussians centred on the exact keypoint over the
    whole map; a keypoint is dropped (weight 0) when ``[kp - 3 sigma, kp + 3 sigma + 1]`` misses the map.
    Arguments and returns as :func:`generate_gaussian_heatmaps` (one ``sigma``)."""
    w, h = heatmap_size
    radius = sigma * 3
    mu = keypoints[..., :2]
    lost = ((mu - radius >= [w, h]) | (mu + radius + 1 < 0)).any(axis=-1)
    on, weights = drawn_and_weights(keypoints_visible, lost)
    centre = mu.astype(np.float32)
    dx2 = (np.arange(w, dtype=np.float32) - centre[..., 0, None]) ** 2
    dy2 = (np.arange(h, dtype=np.float32) - centre[..., 1, None]) ** 2
    values = np.exp(-(dx2[..., None, :] + dy2[..., :, None]) / np.float32(2 * sigma ** 2))
    heatmaps = np.where(on[..., None, None], values, np.float32(0)).max(axis=0, initial=np.float32(0))
    return heatmaps.astype(np.float32, copy=False), weights


def generate_offset_heatmap(heatmap_size: tuple[int, int], keypoints: np.ndarray,
                            keypoints_visible: np.ndarray,
                            radius_factor: float) -> tuple[np.ndarray, np.ndarray]:
    """UDP 'combined' target: per keypoint a disc label map and x / y offset maps.

    Args:
        heatmap_size: (W, H).
        keypoints: (N, K, 2) heatmap px.
        keypoints_visible: (N, K); keypoints < 0.5 leave their three maps at zero.
        radius_factor: disc radius r = radius_factor * max(W, H) in heatmap px.

    Returns:
        heatmaps (K * 3, H, W) float32, per keypoint [label (1 inside the disc of radius r), (kp_x - x) / r,
        (kp_y - y) / r]; keypoint_weights (N, K), a copy of the visibility. With several instances the
        last labelled one fills a keypoint's maps (as MMPose).
    """
    w, h = heatmap_size
    n, k = keypoints.shape[:2]
    radius = radius_factor * max(w, h)
    labelled = _labelled(keypoints_visible)
    last = n - 1 - np.argmax(labelled[::-1], axis=0)  # (K,) last labelled instance
    mu = keypoints[last, np.arange(k), :2]  # (K, 2)
    x_off = (mu[:, 0, None] - np.arange(w)) / radius  # (K, W) float64
    y_off = (mu[:, 1, None] - np.arange(h)) / radius  # (K, H)
    heatmaps = np.empty((k, 3, h, w), dtype=np.float32)
    heatmaps[:, 0] = (x_off[:, None, :] ** 2 + y_off[:, :, None] ** 2 <= 1)
    heatmaps[:, 1] = x_off[:, None, :]
    heatmaps[:, 2] = y_off[:, :, None]
    heatmaps[~labelled.any(axis=0)] = 0
    return heatmaps.reshape(k * 3, h, w), keypoints_visible.copy()
