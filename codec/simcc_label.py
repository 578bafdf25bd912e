"""SimCCLabel: keypoints as 1-D classification targets over sub-pixel bins per axis
(https://arxiv.org/abs/2107.03332)."""
from __future__ import annotations

import numpy as np

from codec.base import BaseKeypointCodec, default_visibility, drawn_and_weights
from codec.keypoint_maximum import get_simcc_maximum
from codec.refinement import refine_simcc_dark
from utils.registry import CODECS


@CODECS.register_module()
class SimCCLabel(BaseKeypointCodec):
    """SimCC encoding: x and y are each classified into ``round(size * simcc_split_ratio)`` bins.

    Encoded (W = round(w * ratio), H = round(h * ratio), bin centre ``round(coord * ratio)``):
    ``keypoint_x_labels`` (N, K, W) and ``keypoint_y_labels`` (N, K, H) float32, and
    ``keypoint_weights`` (N, K), a copy of ``keypoints_visible`` (its dtype) with 0 for visible
    (>= 0.5) keypoints whose target leaves the bins: for ``'gaussian'`` when the 3-sigma window
    ``[mu - 3 sigma, mu + 3 sigma + 1]`` misses ``[0, W) x [0, H)`` entirely, for ``'standard'``
    when the bin itself is outside. Invisible keypoints (< 0.5) get all-zero labels and keep their
    visibility as weight.

    Args:
        input_size: input image size (w, h) in px.
        smoothing_type: ``'gaussian'`` (Gaussian of ``sigma`` bins around the keypoint) or
            ``'standard'`` (one-hot with optional label smoothing).
        sigma: Gaussian sigma in bins, one value or (sigma_x, sigma_y).
        simcc_split_ratio: bins per input pixel.
        label_smooth_weight: mass spread uniformly in ``'standard'`` mode, in [0, 1].
        normalize: divide Gaussian labels by ``sigma * sqrt(2 pi)``.
        use_dark: refine decoded bins with 1-D DARK.
        decode_visibility: also return a visibility estimate from a sharpened softmax.
        decode_beta: sharpening factor for ``decode_visibility``.
    """

    def __init__(self, input_size: tuple[int, int], smoothing_type: str = 'gaussian',
                 sigma: float | tuple[float, float] = 6.0, simcc_split_ratio: float = 2.0,
                 label_smooth_weight: float = 0.0, normalize: bool = True, use_dark: bool = False,
                 decode_visibility: bool = False, decode_beta: float = 150.0) -> None:
        if smoothing_type not in ('gaussian', 'standard'):
            raise ValueError(f"SimCCLabel smoothing_type must be 'gaussian' or 'standard', got "
                             f'{smoothing_type!r}')
        if smoothing_type == 'gaussian' and label_smooth_weight > 0:
            raise ValueError("SimCCLabel label_smooth_weight is only used with smoothing_type='standard'")
        if not 0.0 <= label_smooth_weight <= 1.0:
            raise ValueError(f'SimCCLabel label_smooth_weight must be in [0, 1], got {label_smooth_weight}')
        self.input_size = input_size
        self.smoothing_type = smoothing_type
        self.simcc_split_ratio = simcc_split_ratio
        self.label_smooth_weight = label_smooth_weight
        self.normalize = normalize
        self.use_dark = use_dark
        self.decode_visibility = decode_visibility
        self.decode_beta = decode_beta
        self.sigma = np.array([sigma, sigma] if isinstance(sigma, (int, float)) else sigma)

    @property
    def bins(self) -> tuple[int, int]:
        """(x bins, y bins) of the labels: the input size (w, h) times ``simcc_split_ratio``, rounded."""
        w, h = self.input_size
        return int(np.around(w * self.simcc_split_ratio)), int(np.around(h * self.simcc_split_ratio))

    def encode(self, keypoints: np.ndarray, keypoints_visible: np.ndarray | None = None) -> dict:
        """Encode ``keypoints`` (N, K, 2) input px, ``keypoints_visible`` (N, K) (default all visible)."""
        keypoints_visible = default_visibility(keypoints, keypoints_visible)
        bins_w, bins_h = self.bins
        mu = np.around(keypoints[..., :2] * self.simcc_split_ratio).astype(np.int64)
        size = np.array([bins_w, bins_h])
        if self.smoothing_type == 'gaussian':
            radius = self.sigma * 3
            lost = ((mu - radius >= size) | (mu + radius + 1 < 0)).any(axis=-1)
        else:
            lost = ((mu >= size) | (mu < 0)).any(axis=-1)
        on, weights = drawn_and_weights(keypoints_visible, lost)
        on = on[..., None]
        if self.smoothing_type == 'gaussian':
            x_labels = self._gaussian(mu[..., 0], bins_w, self.sigma[0], on)
            y_labels = self._gaussian(mu[..., 1], bins_h, self.sigma[1], on)
        else:
            x_labels = self._one_hot(mu[..., 0], bins_w, on)
            y_labels = self._one_hot(mu[..., 1], bins_h, on)
        return dict(keypoint_x_labels=x_labels, keypoint_y_labels=y_labels, keypoint_weights=weights)

    def _gaussian(self, mu: np.ndarray, bins: int, sigma: float, on: np.ndarray) -> np.ndarray:
        """(N, K, bins) float32 Gaussians at integer bins ``mu`` (N, K); zero where not ``on``."""
        grid = np.arange(bins, dtype=np.float32)
        dist2 = (grid - mu[..., None].astype(np.float32)) ** 2
        labels = np.where(on, np.exp(-dist2 / np.float32(2 * sigma ** 2)), np.float32(0))
        if self.normalize:
            labels /= np.float32(sigma * np.sqrt(np.pi * 2))
        return labels

    def _one_hot(self, mu: np.ndarray, bins: int, on: np.ndarray) -> np.ndarray:
        """(N, K, bins) float32 smoothed one-hot vectors at bins ``mu``; zero where not ``on``."""
        eps = self.label_smooth_weight
        labels = np.zeros((*mu.shape, bins), dtype=np.float32)
        if eps > 0:
            labels[:] = np.where(on, np.float32(eps / (bins - 1)), np.float32(0))
        hit = on & (np.arange(bins) == mu[..., None])
        labels[hit] = 1.0 - eps
        return labels

    def decode(self, simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray | tuple]:
        """Decode SimCC scores into input px.

        Args:
            simcc_x: (N, K, Wx) or (K, Wx) x-axis scores; not modified.
            simcc_y: (N, K, Wy) or (K, Wy) y-axis scores; not modified.

        Returns:
            keypoints: (N, K, 2) float32 input px (-1 / ratio where the score is <= 0).
            scores: (N, K), min of the two axis maxima; with ``decode_visibility`` a tuple
                ``(scores, visibility)``, visibility (N, K) from a softmax of scores * beta * sigma.
            With ``use_dark`` an all-zero score vector leaves its bin at -1 (MMPose: NaN). Unlike
            MMPose, ``use_dark`` does not overwrite the caller's arrays, so with ``decode_visibility``
            too the visibility comes from the raw scores (MMPose uses the log of the blurred ones).
        """
        keypoints, scores = get_simcc_maximum(simcc_x, simcc_y)
        if keypoints.ndim == 2:
            keypoints, scores = keypoints[None], scores[None]
            simcc_x, simcc_y = simcc_x[None], simcc_y[None]
        if self.use_dark:
            x_blur, y_blur = (int((s * 20 - 7) // 3) for s in self.sigma)
            x_blur -= int(x_blur % 2 == 0)
            y_blur -= int(y_blur % 2 == 0)
            keypoints[..., 0] = refine_simcc_dark(keypoints[..., 0], simcc_x, x_blur)
            keypoints[..., 1] = refine_simcc_dark(keypoints[..., 1], simcc_y, y_blur)
        keypoints /= self.simcc_split_ratio
        if not self.decode_visibility:
            return keypoints, scores
        sx, sy = simcc_x.dtype.type(self.sigma[0]), simcc_y.dtype.type(self.sigma[1])
        _, visibility = get_simcc_maximum(simcc_x * self.decode_beta * sx, simcc_y * self.decode_beta * sy,
                                          apply_softmax=True)
        return keypoints, (scores, visibility)
