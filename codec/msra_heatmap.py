"""MSRAHeatmap: Gaussian heatmaps of SimpleBaseline (https://arxiv.org/abs/1804.06208), optionally DARK."""
from __future__ import annotations

import numpy as np

from codec.base import BaseKeypointCodec, decode_batch, default_visibility, require_single_instance
from codec.heatmap_targets import generate_gaussian_heatmaps, generate_unbiased_gaussian_heatmaps
from codec.keypoint_maximum import get_heatmap_maximum
from codec.refinement import refine_keypoints, refine_keypoints_dark
from utils.registry import CODECS


@CODECS.register_module()
class MSRAHeatmap(BaseKeypointCodec):
    """Heatmaps of size (W, H) = ``heatmap_size``; keypoints scale by ``heatmap_size / input_size``.

    Encoded: ``heatmaps`` (K, H, W) float32 and ``keypoint_weights`` (N, K) (see
    :mod:`codec.heatmap_targets`). Decoded: arg-max per map, refined by a quarter-pixel shift towards
    the higher neighbour, or with ``unbiased`` by DARK (Taylor step on the log of the map blurred
    with ``blur_kernel_size``).

    As in MMPose, with a fractional 3-sigma radius (e.g. sigma 1.5) the Gaussian of a keypoint
    closer than the radius to the left/top border is drawn one pixel too far right/down (its
    window corner is truncated towards zero).

    Args:
        input_size: input image size (w, h) in px.
        heatmap_size: heatmap size (W, H).
        sigma: Gaussian sigma in heatmap px.
        unbiased: DARK encoding (exact-centre Gaussians) and decoding.
        blur_kernel_size: odd DARK modulation kernel; sigma = 0.3 * ((ks - 1) * 0.5 - 1) + 0.8,
            e.g. 11 for sigma 2, 17 for sigma 3.
    """

    def __init__(self, input_size: tuple[int, int], heatmap_size: tuple[int, int], sigma: float,
                 unbiased: bool = False, blur_kernel_size: int = 11) -> None:
        self.input_size = input_size
        self.heatmap_size = heatmap_size
        self.sigma = sigma
        self.unbiased = unbiased
        self.blur_kernel_size = blur_kernel_size
        self.scale_factor = (np.array(input_size) / heatmap_size).astype(np.float32)

    def encode(self, keypoints: np.ndarray, keypoints_visible: np.ndarray | None = None) -> dict:
        """Encode one instance: ``keypoints`` (1, K, 2) input px, ``keypoints_visible`` (1, K)."""
        require_single_instance(self, keypoints)
        keypoints_visible = default_visibility(keypoints, keypoints_visible)
        generate = generate_unbiased_gaussian_heatmaps if self.unbiased else generate_gaussian_heatmaps
        heatmaps, weights = generate(self.heatmap_size, keypoints / self.scale_factor, keypoints_visible,
                                     self.sigma)
        return dict(heatmaps=heatmaps, keypoint_weights=weights)

    def decode(self, encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decode heatmaps (K, H, W) (not modified) into keypoints (1, K, 2) float32 input px and
        scores (1, K) (the maxima; keypoints of maps with maximum <= 0 decode to -1 * scale).

        Also accepts a batch (B, K, H, W) and then returns (B, K, 2) and (B, K) (MMPose: one sample).
        """
        if encoded.ndim == 4:
            return decode_batch(self, encoded)
        keypoints, scores = get_heatmap_maximum(encoded)
        keypoints, scores = keypoints[None], scores[None]
        if self.unbiased:
            keypoints = refine_keypoints_dark(keypoints, encoded, blur_kernel_size=self.blur_kernel_size)
        else:
            keypoints = refine_keypoints(keypoints, encoded)
        return keypoints * self.scale_factor, scores
