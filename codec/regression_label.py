"""RegressionLabel: keypoints as coordinates normalised by the input size (RLE / DeepPose heads)."""
from __future__ import annotations

import numpy as np

from codec.base import BaseKeypointCodec, default_visibility
from utils.registry import CODECS


@CODECS.register_module()
class RegressionLabel(BaseKeypointCodec):
    """Normalised (x / w, y / h) regression targets.

    Encoded: ``keypoint_labels`` (N, K, D) float32 in [0, 1] for in-image keypoints, and
    ``keypoint_weights`` (N, K) float32: 1 where the keypoint is visible (> 0.5) and inside
    ``[0, w - 1] x [0, h - 1]`` (inclusive), else 0.

    Args:
        input_size: input image size (w, h) in px.
    """

    def __init__(self, input_size: tuple[int, int]) -> None:
        self.input_size = input_size

    def encode(self, keypoints: np.ndarray, keypoints_visible: np.ndarray | None = None) -> dict:
        """Normalise ``keypoints`` (N, K, D) input px; ``keypoints_visible`` (N, K), default all visible."""
        keypoints_visible = default_visibility(keypoints, keypoints_visible)
        w, h = self.input_size
        inside = ((keypoints >= 0) & (keypoints <= [w - 1, h - 1])).all(axis=-1)
        valid = inside & (keypoints_visible > 0.5)
        return dict(keypoint_labels=(keypoints / np.array([w, h])).astype(np.float32),
                    keypoint_weights=valid.astype(np.float32))

    def decode(self, encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map normalised predictions back to input px.

        Args:
            encoded: (N, K, 2) normalised coordinates, or (N, K, 4) coordinates followed by the
                RLE sigmas; a leading-dims-free (K, D) array is accepted too.

        Returns:
            keypoints: (N, K, 2) input px (float64 like MMPose: coordinates times ``[w, h]``).
            scores: (N, K): ones (float32) for D == 2, ``mean(1 - sigma)`` for D == 4.
        """
        d = encoded.shape[-1]
        if d == 2:
            coords = encoded
            scores = np.ones(encoded.shape[:-1], dtype=np.float32)
        elif d == 4:
            coords = encoded[..., :2]
            scores = (1 - encoded[..., 2:4]).mean(axis=-1)
        else:
            raise ValueError(f'RegressionLabel.decode expects a last dimension of 2 (x, y) or 4 '
                             f'(x, y, sigma_x, sigma_y), got shape {encoded.shape}')
        return coords * np.array(self.input_size), scores
