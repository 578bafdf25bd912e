"""Common interface of keypoint codecs (encode targets, decode predictions)."""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any

import numpy as np


class BaseKeypointCodec(metaclass=ABCMeta):
    """A codec turns keypoint coordinates into a training target and a prediction back into coordinates.

    Shapes: N instances, K keypoints, D coordinate dims. Coordinates are (x, y) pixels of the
    model's input image (the crop after ``TopdownAffine``).

    ``auxiliary_encode_keys`` (as in MMPose 1.3.2): extra sample keys ``GenerateTarget`` passes to
    :meth:`encode`.
    """

    auxiliary_encode_keys: set[str] = set()

    @abstractmethod
    def encode(self, keypoints: np.ndarray, keypoints_visible: np.ndarray | None = None) -> dict:
        """Encode keypoints (N, K, D) input px with visibility (N, K) into a dict of targets."""

    @abstractmethod
    def decode(self, *encoded: Any) -> tuple[np.ndarray, Any]:
        """Decode a prediction into ``(keypoints (N, K, D) input px, scores (N, K))``."""


def default_visibility(keypoints: np.ndarray, keypoints_visible: np.ndarray | None) -> np.ndarray:
    """``keypoints_visible`` checked against ``keypoints`` (N, K, D); all ones (float32) when None."""
    if keypoints.ndim != 3:
        raise ValueError(f'keypoints must have shape (N, K, D), got {keypoints.shape}')
    if keypoints_visible is None:
        return np.ones(keypoints.shape[:2], dtype=np.float32)
    keypoints_visible = np.asarray(keypoints_visible)
    if keypoints_visible.shape != keypoints.shape[:2]:
        raise ValueError(f'keypoints_visible must have shape {keypoints.shape[:2]} (N, K) to match '
                         f'keypoints {keypoints.shape}, got {keypoints_visible.shape}')
    return keypoints_visible


def drawn_and_weights(keypoints_visible: np.ndarray, lost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which keypoints get a target, and their weights.

    Args:
        keypoints_visible: (N, K) visibility; >= 0.5 counts as labelled.
        lost: (N, K) bool, True where the keypoint's target would fall entirely outside the target.

    Returns:
        drawn: (N, K) bool, labelled and not lost; weights: (N, K) copy of the visibility (its dtype)
        with 0 for labelled but lost keypoints.
    """
    labelled = ~(keypoints_visible < 0.5)
    weights = keypoints_visible.copy()
    weights[labelled & lost] = 0
    return labelled & ~lost, weights


def require_single_instance(codec: BaseKeypointCodec, keypoints: np.ndarray) -> None:
    """Raise unless ``keypoints`` holds exactly one instance (heatmap codecs encode one person)."""
    if keypoints.ndim != 3 or keypoints.shape[0] != 1:
        raise ValueError(f'{type(codec).__name__}.encode supports a single instance: keypoints must '
                         f'have shape (1, K, D), got {keypoints.shape}')


def decode_batch(codec: BaseKeypointCodec, heatmaps: np.ndarray,
                 maps_are_independent: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Decode a batch of heatmaps (B, C, H, W) with a codec whose ``decode`` takes one sample (C, H, W).

    With ``maps_are_independent`` (every decoding step works map by map) all samples are decoded in
    one call as a single sample of B * C maps; otherwise sample by sample.

    Returns:
        keypoints (B, K, 2) and scores (B, K).
    """
    b, c, h, w = heatmaps.shape
    if maps_are_independent:
        keypoints, scores = codec.decode(heatmaps.reshape(b * c, h, w))
    else:
        decoded = [codec.decode(sample) for sample in heatmaps]
        keypoints = np.concatenate([kp for kp, _ in decoded]) if b else np.zeros((0, c, 2))
        scores = np.concatenate([s for _, s in decoded]) if b else np.zeros((0, c))
    return keypoints.reshape(b, -1, keypoints.shape[-1]), scores.reshape(b, -1)
