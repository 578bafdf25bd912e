"""IntegralRegressionLabel: regression labels plus normalised heatmaps (DSNT, https://arxiv.org/abs/1801.07372)."""
from __future__ import annotations

import numpy as np

from codec.base import BaseKeypointCodec
from codec.msra_heatmap import MSRAHeatmap
from codec.regression_label import RegressionLabel
from utils.registry import CODECS


@CODECS.register_module()
class IntegralRegressionLabel(BaseKeypointCodec):
    """:class:`RegressionLabel` targets plus :class:`MSRAHeatmap` heatmaps, each map divided by its sum.

    Encoded: ``keypoint_labels`` (N, K, 2) float32, ``heatmaps`` (K, H, W) float32 and
    ``keypoint_weights`` (N, K) from the regression labels (visible > 0.5 and inside the input).
    Decoding is :meth:`RegressionLabel.decode`.

    Args:
        input_size: input image size (w, h) in px.
        heatmap_size: heatmap size (W, H).
        sigma: Gaussian sigma in heatmap px.
        unbiased: DARK (exact-centre) Gaussians.
        blur_kernel_size: DARK modulation kernel (unused by decoding, kept for config compatibility).
        normalize: divide each heatmap by its sum (+1e-24, so empty maps stay zero).
    """

    def __init__(self, input_size: tuple[int, int], heatmap_size: tuple[int, int], sigma: float,
                 unbiased: bool = False, blur_kernel_size: int = 11, normalize: bool = True) -> None:
        self.heatmap_codec = MSRAHeatmap(input_size, heatmap_size, sigma, unbiased, blur_kernel_size)
        self.keypoint_codec = RegressionLabel(input_size)
        self.normalize = normalize

    def encode(self, keypoints: np.ndarray, keypoints_visible: np.ndarray | None = None) -> dict:
        """Encode one instance: ``keypoints`` (1, K, 2) input px, ``keypoints_visible`` (1, K)."""
        heatmaps = self.heatmap_codec.encode(keypoints, keypoints_visible)['heatmaps']
        labels = self.keypoint_codec.encode(keypoints, keypoints_visible)
        if self.normalize:
            heatmaps = heatmaps / (heatmaps.sum(axis=(-1, -2)).reshape(-1, 1, 1) + 1e-24)
        return dict(keypoint_labels=labels['keypoint_labels'], heatmaps=heatmaps,
                    keypoint_weights=labels['keypoint_weights'])

    def decode(self, encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decode (N, K, 2|4) normalised coordinates like :meth:`RegressionLabel.decode`."""
        return self.keypoint_codec.decode(encoded)
