"""Top-down box augmentations before the crop: box centre/scale, flip, half body, shift/scale/rotate.

All draw from the sample's generator (:func:`datasets.transforms.rng.sample_rng`).
"""
from __future__ import annotations

import bisect
import warnings
from collections.abc import Sequence

import cv2
import numpy as np

from datasets.transforms.base import BaseTransform
from datasets.transforms.rng import sample_rng, truncated_normal
from structures.bbox import FLIP_DIRECTIONS, bbox_xyxy2cs, flip_bbox
from structures.keypoint import flip_keypoints
from utils.registry import TRANSFORMS

_CV2_FLIP_CODE = {'horizontal': 1, 'vertical': 0, 'diagonal': -1}


@TRANSFORMS.register_module()
class GetBBoxCenterScale(BaseTransform):
    """``bbox`` (N, 4) xyxy -> ``bbox_center`` (N, 2) and ``bbox_scale`` (N, 2) = size * ``padding``.

    Existing ``bbox_center``/``bbox_scale`` are kept, with the padding applied to the scale.
    """

    def __init__(self, padding: float = 1.25) -> None:
        self.padding = padding

    def transform(self, results: dict) -> dict:
        if 'bbox_center' in results and 'bbox_scale' in results:
            warnings.warn('GetBBoxCenterScale: using the existing bbox_center/bbox_scale; the padding '
                          'is still applied to the scale', stacklevel=2)
            results['bbox_scale'] = results['bbox_scale'] * self.padding
        else:
            results['bbox_center'], results['bbox_scale'] = bbox_xyxy2cs(results['bbox'], self.padding)
        return results


@TRANSFORMS.register_module()
class RandomFlip(BaseTransform):
    """Mirror image, boxes and keypoints (with left/right joints swapped via ``flip_indices``).

    Args:
        prob: flip probability; a list gives one probability per direction of ``direction``.
        direction: 'horizontal', 'vertical', 'diagonal' or a list of them (a float ``prob`` is
            then split evenly among them).

    Sets ``flip`` (bool) and ``flip_direction`` (str or None).
    """

    def __init__(self, prob: float | Sequence[float] = 0.5,
                 direction: str | Sequence[str] = 'horizontal') -> None:
        directions = [direction] if isinstance(direction, str) else list(direction)
        if not directions or any(d not in FLIP_DIRECTIONS for d in directions):
            raise ValueError(f'direction must be one of {FLIP_DIRECTIONS} or a list of them, '
                             f'got {direction!r}')
        if isinstance(prob, (int, float)):
            probs = [float(prob) / len(directions)] * len(directions)
        else:
            probs = [float(p) for p in prob]
            if len(probs) != len(directions):
                raise ValueError(f'{len(probs)} probabilities for {len(directions)} directions')
        if any(p < 0 for p in probs) or sum(probs) > 1 + 1e-9:
            raise ValueError(f'flip probabilities must be >= 0 and sum to at most 1, got {prob!r}')
        self.prob = prob
        self.direction = direction
        self._choices = [*directions, None]
        self._cum = np.cumsum(probs).tolist()  # u ~ U[0, 1) picks direction i where cum[i-1] <= u < cum[i]

    def draw_direction(self, rng: np.random.Generator) -> str | None:
        """The flip direction of one sample ('horizontal', ...), or ``None`` for no flip."""
        return self._choices[bisect.bisect_right(self._cum, rng.random())]

    def transform(self, results: dict) -> dict:
        flip_dir = self.draw_direction(sample_rng(results))
        results['flip'] = flip_dir is not None
        results['flip_direction'] = flip_dir
        if flip_dir is None:
            return results
        h, w = results.get('input_size', results['img_shape'])  # MMPose reads input_size as (h, w)
        img = results['img']
        if isinstance(img, list):
            results['img'] = [cv2.flip(i, _CV2_FLIP_CODE[flip_dir]) for i in img]
        else:
            results['img'] = cv2.flip(img, _CV2_FLIP_CODE[flip_dir])
        if results.get('bbox') is not None:
            results['bbox'] = flip_bbox(results['bbox'], (w, h), 'xyxy', flip_dir)
        if results.get('bbox_center') is not None:
            results['bbox_center'] = flip_bbox(results['bbox_center'], (w, h), 'center', flip_dir)
        if results.get('keypoints') is not None:
            results['keypoints'], results['keypoints_visible'] = flip_keypoints(
                results['keypoints'], results.get('keypoints_visible'), (w, h),
                results['flip_indices'], flip_dir)
        return results


@TRANSFORMS.register_module()
class RandomHalfBody(BaseTransform):
    """With probability ``prob``, replace the box by one around the visible upper or lower body
    joints (upper preferred with ``upper_prioritized_prob``), when the instance has at least
    ``min_total_keypoints`` visible joints and the chosen half enough of its own.

    The new ``bbox_center`` is the joints' mean; ``bbox_scale`` their extent times ``padding``.
    """

    def __init__(self, min_total_keypoints: int = 9, min_upper_keypoints: int = 2,
                 min_lower_keypoints: int = 3, padding: float = 1.5, prob: float = 0.3,
                 upper_prioritized_prob: float = 0.7) -> None:
        self.min_total_keypoints = min_total_keypoints
        self.min_upper_keypoints = min_upper_keypoints
        self.min_lower_keypoints = min_lower_keypoints
        self.padding = padding
        self.prob = prob
        self.upper_prioritized_prob = upper_prioritized_prob

    def select(self, visible: np.ndarray, upper_ids: Sequence[int], lower_ids: Sequence[int],
               rng: np.random.Generator) -> list[int] | None:
        """Draw whether one instance (``visible`` (K,)) gets a half-body box: the keypoint indices
        to frame, or ``None`` to keep its box."""
        if np.add.reduce(visible) < self.min_total_keypoints or rng.random() > self.prob:  # = visible.sum()
            return None
        values = visible.tolist()  # Python numbers: cheaper to index one by one than numpy's
        upper = [i for i in upper_ids if values[i] > 0]
        lower = [i for i in lower_ids if values[i] > 0]
        prefer_upper = rng.random() < self.upper_prioritized_prob
        upper_ok = len(upper) >= self.min_upper_keypoints
        lower_ok = len(lower) >= self.min_lower_keypoints
        if not upper_ok and not lower_ok:
            return None
        if not lower_ok:
            return upper
        if not upper_ok:
            return lower
        return upper if prefer_upper else lower

    def transform(self, results: dict) -> dict:
        visible = results['keypoints_visible']
        if visible.ndim == 3:
            visible = visible[..., 0]
        rng = sample_rng(results)
        centers, scales = [], []
        for i, vis in enumerate(visible):
            ids = self.select(vis, results['upper_body_ids'], results['lower_body_ids'], rng)
            if ids is None:
                centers.append(results['bbox_center'][i])
                scales.append(results['bbox_scale'][i])
            else:
                pts = results['keypoints'][i][ids]
                centers.append(pts.mean(axis=0)[:2])
                scales.append(((pts.max(axis=0) - pts.min(axis=0)) * self.padding).astype(pts.dtype))
        results['bbox_center'] = np.stack(centers)
        results['bbox_scale'] = np.stack(scales)
        return results


@TRANSFORMS.register_module()
class RandomBBoxTransform(BaseTransform):
    """Randomly shift, scale and rotate each box (MMPose semantics).

    With v ~ N(0, 1) truncated to [-1, 1] per box and parameter:
    - with prob ``shift_prob``: centre += v * ``shift_factor`` * scale (x and y independently);
    - with prob ``scale_prob``: scale *= mu + v * sigma, (mu, sigma) the mid-point and half-width
      of ``scale_factor``;
    - with prob ``rotate_prob``: ``bbox_rotation`` = v * ``rotate_factor`` degrees (else 0).
    """

    def __init__(self, shift_factor: float = 0.16, shift_prob: float = 0.3,
                 scale_factor: tuple[float, float] = (0.5, 1.5), scale_prob: float = 1.0,
                 rotate_factor: float = 80.0, rotate_prob: float = 0.6) -> None:
        self.shift_factor = shift_factor
        self.shift_prob = shift_prob
        self.scale_factor = tuple(scale_factor)
        self.scale_prob = scale_prob
        self.rotate_factor = rotate_factor
        self.rotate_prob = rotate_prob
        lo, hi = self.scale_factor  # the factors as float32 values (Python floats), for get_params
        self._factors32 = tuple(float(np.float32(f)) for f in (shift_factor, (hi - lo) * 0.5, (hi + lo) * 0.5,
                                                               rotate_factor))

    def get_params(self, num_bboxes: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(offset (N, 2) in box-size units, scale factor (N, 1), rotation (N,) degrees), float32.

        Draws ``v`` (N, 4), then the N shift coins, the N scale coins and the N rotation coins."""
        v = truncated_normal(rng, (num_bboxes, 4)).tolist()
        coins = rng.random(3 * num_bboxes).tolist()  # the same draws as three calls, one per kind of coin
        # float32 arithmetic, as numpy's on the float32 v with Python-float factors: each product or
        # sum of float32 values is exact in a Python float or rounded once to float32 by np.float32
        # (53 >= 2 * 24 + 2 bits: the second rounding changes nothing)
        shift, half, mid, rotate = self._factors32
        out = [(vx * shift, vy * shift) if coins[i] < self.shift_prob else (0.0, 0.0)
               for i, (vx, vy, _, _) in enumerate(v)]
        out = [(*o, float(np.float32(vs * half)) + mid if coins[num_bboxes + i] < self.scale_prob else 1.0,
                vr * rotate if coins[2 * num_bboxes + i] < self.rotate_prob else 0.0)
               for i, (o, (_, _, vs, vr)) in enumerate(zip(out, v))]
        params = np.array(out, dtype=np.float32).reshape(num_bboxes, 4)
        return params[:, :2], params[:, 2:3], params[:, 3]

    def transform(self, results: dict) -> dict:
        bbox_scale = results['bbox_scale']
        offset, scale, rotate = self.get_params(bbox_scale.shape[0], sample_rng(results))
        results['bbox_center'] = results['bbox_center'] + offset * bbox_scale
        results['bbox_scale'] = bbox_scale * scale
        results['bbox_rotation'] = rotate
        return results
