"""Colour augmentations on the (cropped) image: YOLOX HSV jitter and MMPose's PhotometricDistortion."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from datasets.transforms.base import BaseTransform
from datasets.transforms.rng import sample_rng
from utils.registry import TRANSFORMS

_LEVELS3 = np.repeat(np.arange(256, dtype=np.int16)[:, None], 3, axis=1)  # (256, 3): a LUT per channel


@TRANSFORMS.register_module()
class YOLOXHSVRandomAug(BaseTransform):
    """Add random offsets to hue, saturation and value of the BGR uint8 ``img``.

    Each channel's offset is uniform in (-delta, delta), kept with probability 1/2, and truncated
    to an integer; hue wraps modulo 180, saturation/value clip to [0, 255]. The image always goes
    through the HSV round trip (as in MMPose), which itself quantises colours slightly.
    """

    def __init__(self, hue_delta: int = 5, saturation_delta: int = 30, value_delta: int = 30) -> None:
        self.hue_delta = hue_delta
        self.saturation_delta = saturation_delta
        self.value_delta = value_delta

    def get_gains(self, rng: np.random.Generator) -> np.ndarray:
        """(3,) int16 offsets for (hue, saturation, value)."""
        # MMPose's uniform(-1, 1, 3) * deltas * integers(0, 2, 3), cast to int16, in fewer numpy calls with
        # the same draws and values: uniform(-1, 1) is -1 + 2 u (2 u is exact), and integers(0, 2) is the
        # top bit of one 32-bit draw (Lemire's method on 2 values never rejects), as is a float32
        # random() >= 0.5 (the top 24 bits of the same 32-bit draw, over 2**24; three in one call draw
        # the three words one after the other); int() truncates as the cast
        uniform = [2 * u - 1 for u in rng.random(3).tolist()]
        coins = [int(c >= 0.5) for c in rng.random(3, dtype=np.float32).tolist()]
        deltas = self.hue_delta, self.saturation_delta, self.value_delta
        return np.array([int(u * d * c) for u, d, c in zip(uniform, deltas, coins)], dtype=np.int16)

    def transform(self, results: dict) -> dict:
        lut = _LEVELS3 + self.get_gains(sample_rng(results))
        lut[:, 0] %= 180  # hue wraps; saturation and value clip
        np.clip(lut, 0, 255, out=lut)
        hsv = cv2.LUT(cv2.cvtColor(results['img'], cv2.COLOR_BGR2HSV), lut.astype(np.uint8)[:, None, :])
        results['img'] = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        return results


def _convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


@TRANSFORMS.register_module()
class PhotometricDistortion(BaseTransform):
    """Random brightness, contrast (before or after the HSV step), saturation, hue and channel swap,
    each applied with probability 1/2, as MMPose's ``PhotometricDistortion`` (BGR uint8 ``img``).

    Like MMPose 1.3.2, contrast is applied both before and after the HSV step when
    ``contrast_mode == 1`` and not at all when it is 0 (its code tests the same mode twice).

    Args:
        brightness_delta: brightness offset range (-delta, delta).
        contrast_range: contrast factor range.
        saturation_range: saturation factor range.
        hue_delta: hue offset range [-delta, delta).
    """

    def __init__(self, brightness_delta: int = 32, contrast_range: Sequence[float] = (0.5, 1.5),
                 saturation_range: Sequence[float] = (0.5, 1.5), hue_delta: int = 18) -> None:
        self.brightness_delta = brightness_delta
        self.contrast_lower, self.contrast_upper = contrast_range
        self.saturation_lower, self.saturation_upper = saturation_range
        self.hue_delta = hue_delta

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        """One image's random parameters, drawn in MMPose's order: ``beta`` brightness offset and
        ``alpha`` contrast factor (applied before and after the HSV step), ``hsv`` whether the HSV step
        runs, its ``saturation`` factor and ``hue`` offset, ``order`` the output channel order (3,) or
        None. A step that is not drawn gets its identity (beta 0, alpha / saturation 1, hue 0)."""
        contrast_mode, brightness_flag, contrast_flag, swap_flag = rng.integers(0, 2, 4)
        hsv_mode = rng.integers(0, 4)
        beta = rng.uniform(-self.brightness_delta, self.brightness_delta)
        alpha = rng.uniform(self.contrast_lower, self.contrast_upper)
        saturation = rng.uniform(self.saturation_lower, self.saturation_upper)
        hue = int(rng.integers(-self.hue_delta, self.hue_delta))
        order = rng.permutation(3)
        return {'beta': beta if brightness_flag else 0.0,
                'alpha': alpha if contrast_mode == 1 and contrast_flag else 1.0,  # MMPose tests mode 1 twice
                'hsv': bool(hsv_mode), 'saturation': saturation if hsv_mode in (1, 3) else 1.0,
                'hue': hue if hsv_mode in (2, 3) else 0, 'order': order if swap_flag else None}

    def transform(self, results: dict) -> dict:
        params = self.draw(sample_rng(results))
        img = results['img']
        if params['beta']:
            img = _convert(img, beta=params['beta'])
        if params['alpha'] != 1.0:
            img = _convert(img, alpha=params['alpha'])
        if params['hsv']:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
            if params['saturation'] != 1.0:
                img[:, :, 1] = _convert(img[:, :, 1], alpha=params['saturation'])
            if params['hue']:  # wraps modulo 256 like MMPose's uint8 assignment
                img[:, :, 0] = (img[:, :, 0].astype(np.int64) + params['hue']).astype(np.uint8)
            img = cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
        if params['alpha'] != 1.0:
            img = _convert(img, alpha=params['alpha'])
        if params['order'] is not None:
            img = img[..., params['order']]
        results['img'] = img
        return results
