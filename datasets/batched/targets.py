"""Codec training targets for a whole batch, computed on the batch's device.

Each encoder gives what ``codec.encode`` + ``PackPoseInputs`` + ``pose_collate`` give for the same
keypoints: one instance per sample, the instance dim dropped, float32 (B, ...) tensors. Codec
constants enter as Python numbers, or for divisors as device tensors made by a fill
(:func:`device_values`): nothing is copied from the host.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from codec import MSRAHeatmap, RegressionLabel, SimCCLabel, UDPHeatmap


def device_values(values: float | tuple[float, ...], dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    """``torch.tensor(values, dtype=dtype, device=device)`` (a number or a tuple of them) made on the
    device by fills, with no host-to-device copy; for divisors, whose division CUDA would otherwise
    turn into a multiplication by their reciprocal."""
    if not isinstance(values, tuple):
        return torch.full((), values, dtype=dtype, device=device)
    return torch.stack([torch.full((), v, dtype=dtype, device=device) for v in values])


def _labelled_weights(visible: torch.Tensor, lost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(drawn (B, K) bool, weights (B, K)) as ``codec.base.drawn_and_weights``."""
    labelled = ~(visible < 0.5)
    return labelled & ~lost, torch.where(labelled & lost, torch.zeros_like(visible), visible)


def encode_regression(codec: RegressionLabel, keypoints: torch.Tensor,
                      visible: torch.Tensor) -> dict[str, torch.Tensor]:
    """``RegressionLabel`` targets of keypoints (B, K, 2) input px with visibility (B, K):
    ``keypoint_labels`` (B, K, 2) in [0, 1] of the input size, ``keypoint_weights`` (B, K)."""
    w, h = codec.input_size
    x, y = keypoints.unbind(-1)
    inside = (x >= 0) & (y >= 0) & (x <= w - 1) & (y <= h - 1)
    size = device_values((float(w), float(h)), torch.float64, keypoints.device)
    labels = (keypoints.double() / size).float()
    return {'keypoint_labels': labels, 'keypoint_weights': (inside & (visible > 0.5)).float()}


def _simcc_gaussian(mu: torch.Tensor, bins: int, sigma: float, on: torch.Tensor,
                    normalize: bool) -> torch.Tensor:
    grid = torch.arange(bins, dtype=torch.float32, device=mu.device)
    dist2 = (grid - mu[..., None].float()) ** 2
    labels = torch.exp(-dist2 / device_values(2 * sigma ** 2, torch.float32, mu.device))
    labels = torch.where(on, labels, 0.0)
    if normalize:
        labels = labels / device_values(sigma * math.sqrt(math.pi * 2), torch.float32, mu.device)
    return labels


def _simcc_one_hot(mu: torch.Tensor, bins: int, eps: float, on: torch.Tensor) -> torch.Tensor:
    grid = torch.arange(bins, device=mu.device)
    fill = torch.where(on, device_values(eps / (bins - 1), torch.float32, mu.device), 0.0)
    return torch.where(on & (grid == mu[..., None]), device_values(1.0 - eps, torch.float32, mu.device), fill)


def encode_simcc(codec: SimCCLabel, keypoints: torch.Tensor,
                 visible: torch.Tensor) -> dict[str, torch.Tensor]:
    """``SimCCLabel`` targets of keypoints (B, K, 2) input px with visibility (B, K):
    ``keypoint_x_labels`` (B, K, Wx), ``keypoint_y_labels`` (B, K, Hy), ``keypoint_weights`` (B, K)."""
    bins_w, bins_h = codec.bins
    mu = torch.round(keypoints * codec.simcc_split_ratio).long()
    lost = torch.zeros_like(mu[..., 0], dtype=torch.bool)
    for axis, bins in enumerate((bins_w, bins_h)):
        if codec.smoothing_type == 'gaussian':  # in float64, as numpy compares int - float64 sigma
            radius = float(codec.sigma[axis]) * 3
            low = mu[..., axis].double()
            lost = lost | (low - radius >= bins) | (low + radius + 1 < 0)
        else:
            lost = lost | (mu[..., axis] >= bins) | (mu[..., axis] < 0)
    on, weights = _labelled_weights(visible, lost)
    on = on[..., None]
    if codec.smoothing_type == 'gaussian':
        sx, sy = (float(s) for s in codec.sigma)
        x = _simcc_gaussian(mu[..., 0], bins_w, sx, on, codec.normalize)
        y = _simcc_gaussian(mu[..., 1], bins_h, sy, on, codec.normalize)
    else:
        x = _simcc_one_hot(mu[..., 0], bins_w, codec.label_smooth_weight, on)
        y = _simcc_one_hot(mu[..., 1], bins_h, codec.label_smooth_weight, on)
    return {'keypoint_weights': weights, 'keypoint_x_labels': x, 'keypoint_y_labels': y}


def _gaussian_maps(keypoints: torch.Tensor, visible: torch.Tensor, heatmap_size: tuple[int, int],
                   sigma: float, window: bool, sub_pixel: bool) -> dict[str, torch.Tensor]:
    """Heatmaps (B, K, H, W) of keypoints (B, K, 2) heatmap px as ``codec.heatmap_targets`` draws them:
    within the (2 * 3 sigma + 1)-px window around ``int(kp + 0.5)`` (``window``; centred on the exact
    keypoint with ``sub_pixel``), else over the whole map around the exact keypoint (DARK)."""
    w, h = heatmap_size
    radius = sigma * 3
    axes = [torch.arange(w, device=keypoints.device), torch.arange(h, device=keypoints.device)]
    if window:
        mu = (keypoints + 0.5).long()  # truncation towards zero, like numpy's astype
        low, high = (mu - radius).long(), (mu + radius + 1).long()
        lost = (low[..., 0] >= w) | (low[..., 1] >= h) | (high < 0).any(dim=-1)
        span = 2 * radius + 1
        centre = torch.full_like(keypoints, span // 2, dtype=torch.float64)
        if sub_pixel:
            centre = centre + (keypoints.double() - mu)
        centre = centre.float()
        d2, inside = [], []
        for axis in (0, 1):
            t = axes[axis] - low[..., axis, None]  # position inside the window (B, K, size)
            d2.append((t.float() - centre[..., axis, None]) ** 2)
            inside.append((t >= 0) & (t < span) & (axes[axis] < high[..., axis, None]))
    else:
        lost = ((keypoints[..., 0] - radius >= w) | (keypoints[..., 1] - radius >= h)
                | (keypoints + radius + 1 < 0).any(dim=-1))
        d2 = [(axes[axis].float() - keypoints[..., axis, None]) ** 2 for axis in (0, 1)]
        inside = [torch.ones_like(v, dtype=torch.bool) for v in d2]
    on, weights = _labelled_weights(visible, lost)
    two_var = device_values(2 * sigma ** 2, torch.float32, keypoints.device)
    values = torch.exp(-(d2[0][..., None, :] + d2[1][..., :, None]) / two_var)
    mask = inside[0][..., None, :] & inside[1][..., :, None] & on[..., None, None]
    return {'heatmaps': torch.where(mask, values, 0.0), 'keypoint_weights': weights}


def _scale_factor(codec: MSRAHeatmap | UDPHeatmap, device: torch.device) -> torch.Tensor:
    """The codec's (2,) input-to-heatmap ``scale_factor`` on ``device``, in its dtype (float32)."""
    factor = codec.scale_factor
    return device_values(tuple(map(float, factor)), getattr(torch, factor.dtype.name), device)


def encode_msra(codec: MSRAHeatmap, keypoints: torch.Tensor,
                visible: torch.Tensor) -> dict[str, torch.Tensor]:
    """``MSRAHeatmap`` targets (plain or ``unbiased``) of keypoints (B, K, 2) input px, visibility (B, K):
    ``heatmaps`` (B, K, H, W), ``keypoint_weights`` (B, K)."""
    scaled = keypoints / _scale_factor(codec, keypoints.device)
    return _gaussian_maps(scaled, visible, codec.heatmap_size, float(codec.sigma), window=not codec.unbiased,
                          sub_pixel=False)


def encode_udp(codec: UDPHeatmap, keypoints: torch.Tensor, visible: torch.Tensor) -> dict[str, torch.Tensor]:
    """``UDPHeatmap`` (``heatmap_type='gaussian'``) targets of keypoints (B, K, 2) input px."""
    scaled = keypoints / _scale_factor(codec, keypoints.device)
    return _gaussian_maps(scaled, visible, codec.heatmap_size, float(codec.sigma), window=True,
                          sub_pixel=True)


DEVICE_CODECS: dict[str, Callable[..., dict[str, torch.Tensor]]] = {
    'RegressionLabel': encode_regression, 'SimCCLabel': encode_simcc, 'MSRAHeatmap': encode_msra,
    'UDPHeatmap': encode_udp}


def unbatched_reason(codec: object) -> str | None:
    """Why ``codec`` has no device encoder (a sentence), or ``None`` when it has one."""
    name = type(codec).__name__
    if name not in DEVICE_CODECS:
        return f'codec {name} is not batched (batched: {", ".join(sorted(DEVICE_CODECS))})'
    if isinstance(codec, UDPHeatmap) and codec.heatmap_type != 'gaussian':
        return f"UDPHeatmap heatmap_type {codec.heatmap_type!r} is not batched (only 'gaussian')"
    return None


def encode_targets(codec: object, keypoints: torch.Tensor, visible: torch.Tensor,
                   joint_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Targets of ``codec`` for keypoints (B, K, 2) input px, visibility (B, K), on their device.

    ``joint_weights`` (B, K) multiplies ``keypoint_weights`` (``use_dataset_keypoint_weights``).
    Keys are sorted like ``pose_collate``'s.
    """
    out = DEVICE_CODECS[type(codec).__name__](codec, keypoints.float(), visible.float())
    if joint_weights is not None:
        out['keypoint_weights'] = out['keypoint_weights'] * joint_weights
    return {k: out[k] for k in sorted(out)}
