"""UDPHeatmap: Unbiased Data Processing heatmaps (https://arxiv.org/abs/1911.07524)."""
from __future__ import annotations

import cv2
import numpy as np

from codec.base import BaseKeypointCodec, decode_batch, default_visibility, require_single_instance
from codec.heatmap_targets import generate_offset_heatmap, generate_udp_gaussian_heatmaps
from codec.keypoint_maximum import get_heatmap_maximum
from codec.refinement import refine_keypoints_dark_udp
from utils.registry import CODECS


@CODECS.register_module()
class UDPHeatmap(BaseKeypointCodec):
    """UDP heatmaps: input px map to heatmap px by ``(heatmap_size - 1) / (input_size - 1)``.

    Encoded: ``heatmaps`` (C, H, W) float32 with C = K for ``'gaussian'`` and 3K for ``'combined'``
    (per keypoint a disc label map and x / y offset maps), and ``keypoint_weights`` (N, K).

    Args:
        input_size: input image size (w, h) in px.
        heatmap_size: heatmap size (W, H).
        heatmap_type: ``'gaussian'`` or ``'combined'``.
        sigma: Gaussian sigma in heatmap px (``'gaussian'``).
        radius_factor: disc radius as a fraction of max(W, H) (``'combined'``).
        blur_kernel_size: odd kernel of the DARK modulation (``'gaussian'``); for ``'combined'`` the
            label maps are blurred with a (2 * blur_kernel_size + 1) kernel before the arg-max.
    """

    def __init__(self, input_size: tuple[int, int], heatmap_size: tuple[int, int],
                 heatmap_type: str = 'gaussian', sigma: float = 2., radius_factor: float = 0.0546875,
                 blur_kernel_size: int = 11) -> None:
        if heatmap_type not in ('gaussian', 'combined'):
            raise ValueError(f"UDPHeatmap heatmap_type must be 'gaussian' or 'combined', "
                             f'got {heatmap_type!r}')
        self.input_size = input_size
        self.heatmap_size = heatmap_size
        self.sigma = sigma
        self.radius_factor = radius_factor
        self.heatmap_type = heatmap_type
        self.blur_kernel_size = blur_kernel_size
        self.scale_factor = ((np.array(input_size) - 1) / (np.array(heatmap_size) - 1)).astype(np.float32)

    def encode(self, keypoints: np.ndarray, keypoints_visible: np.ndarray | None = None) -> dict:
        """Encode one instance: ``keypoints`` (1, K, 2) input px, ``keypoints_visible`` (1, K)."""
        require_single_instance(self, keypoints)
        keypoints_visible = default_visibility(keypoints, keypoints_visible)
        scaled = keypoints / self.scale_factor
        if self.heatmap_type == 'gaussian':
            heatmaps, weights = generate_udp_gaussian_heatmaps(self.heatmap_size, scaled, keypoints_visible,
                                                               self.sigma)
        else:
            heatmaps, weights = generate_offset_heatmap(self.heatmap_size, scaled, keypoints_visible,
                                                        self.radius_factor)
        return dict(heatmaps=heatmaps, keypoint_weights=weights)

    def decode(self, encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decode heatmaps (C, H, W) (not modified) into keypoints (1, K, 2) float64 input px and scores
        (1, K) (the maxima of the Gaussian / blurred label maps). Also accepts a batch (B, C, H, W) and
        then returns (B, K, 2) and (B, K) (MMPose: one sample).

        ``'gaussian'``: arg-max refined by UDP-DARK; an all-zero map decodes to -1 heatmap px, which
        maps to ``-input_size / (heatmap_size - 1)`` (MMPose returns NaN there).

        Heatmap px map back to input px by ``input_size / (heatmap_size - 1)``, not by the inverse of
        the encoding scale ``(input_size - 1) / (heatmap_size - 1)``; this is MMPose 1.3.2's behaviour
        (an outward shift of up to about 1 px at the far edge) and is kept for identical results.
        """
        if encoded.ndim == 4:  # per sample: for empty maps MMPose reads neighbouring maps' values
            return decode_batch(self, encoded, maps_are_independent=False)
        if self.heatmap_type == 'gaussian':
            keypoints, scores = get_heatmap_maximum(encoded)
            keypoints = refine_keypoints_dark_udp(keypoints[None], encoded, self.blur_kernel_size)
            scores = scores[None]
        else:
            keypoints, scores = self._decode_combined(encoded)
        w, h = self.heatmap_size
        return keypoints / [w - 1, h - 1] * self.input_size, scores

    def _decode_combined(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Arg-max of the blurred label maps plus the offsets read there; (1, K, 2) heatmap px, (1, K)."""
        c, h, w = heatmaps.shape
        k = c // 3
        ks = 2 * self.blur_kernel_size + 1
        labels = np.ascontiguousarray(heatmaps[::3].transpose(1, 2, 0))
        if k:
            labels = cv2.GaussianBlur(labels, (ks, ks), 0).reshape(h, w, k)
        labels = labels.transpose(2, 0, 1)
        radius = self.radius_factor * max(w, h)
        x_offset = heatmaps[1::3].ravel() * radius
        y_offset = heatmaps[2::3].ravel() * radius
        keypoints, scores = get_heatmap_maximum(labels)
        index = (keypoints[..., 0] + keypoints[..., 1] * w).ravel()
        index = (index + w * h * np.arange(k)).astype(int)  # -1 (empty map) wraps like MMPose
        keypoints = keypoints + np.stack((x_offset[index], y_offset[index]), axis=-1)
        return keypoints[None].astype(np.float32), scores[None]
