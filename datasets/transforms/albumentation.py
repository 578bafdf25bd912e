"""``Albumentation``: image-only augmentations named as in albumentations 1.x.

``Blur``, ``MedianBlur`` and ``CoarseDropout`` are implemented here with albumentations 1.3
semantics (no albumentations needed); other names are delegated to the albumentations package
when it is installed.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from datasets.transforms.base import BaseTransform
from datasets.transforms.rng import sample_rng
from utils.registry import ALBUMENTATIONS, TRANSFORMS


def _kernel_limits(blur_limit: int | Sequence[int]) -> tuple[int, int]:
    lo, hi = (3, blur_limit) if isinstance(blur_limit, int) else tuple(blur_limit)
    if lo < 3 or hi < lo:
        raise ValueError(f'blur_limit must give 3 <= low <= high, got {blur_limit!r}')
    return int(lo), int(hi)


@ALBUMENTATIONS.register_module()
class Blur:
    """Box blur with an odd kernel size drawn uniformly from [3, ``blur_limit``], with prob ``p``."""

    def __init__(self, blur_limit: int | Sequence[int] = 7, always_apply: bool = False, p: float = 0.5):
        self.limits = _kernel_limits(blur_limit)
        self.p = 1.0 if always_apply else p

    def kernel_size(self, rng: np.random.Generator) -> int:
        """An odd kernel size (px) drawn uniformly from the limits."""
        sizes = range(self.limits[0], self.limits[1] + 1, 2)
        return int(sizes[rng.integers(len(sizes))])

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        k = self.kernel_size(rng)
        return cv2.blur(img, (k, k))


@ALBUMENTATIONS.register_module()
class MedianBlur(Blur):
    """Median filter with an odd kernel size drawn uniformly from [3, ``blur_limit``], prob ``p``."""

    def __init__(self, blur_limit: int | Sequence[int] = 7, always_apply: bool = False, p: float = 0.5):
        super().__init__(blur_limit, always_apply, p)
        if self.limits[0] % 2 != 1 or self.limits[1] % 2 != 1:
            raise ValueError(f'MedianBlur needs odd blur limits, got {blur_limit!r}')

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return cv2.medianBlur(img, self.kernel_size(rng))


@ALBUMENTATIONS.register_module()
class CoarseDropout:
    """Fill ``min_holes..max_holes`` random rectangles with ``fill_value``, with prob ``p``.

    Hole sizes are ints in pixels, or floats in [0, 1) as fractions of the image height/width
    (size = int(dim * uniform(min, max))); positions are uniform so the hole stays inside.
    """

    def __init__(self, max_holes: int = 8, max_height: int | float = 8, max_width: int | float = 8,
                 min_holes: int | None = None, min_height: int | float | None = None,
                 min_width: int | float | None = None, fill_value: int | float = 0,
                 mask_fill_value: int | float | None = None, always_apply: bool = False,
                 p: float = 0.5):
        self.max_holes, self.min_holes = max_holes, max_holes if min_holes is None else min_holes
        self.max_height, self.min_height = max_height, max_height if min_height is None else min_height
        self.max_width, self.min_width = max_width, max_width if min_width is None else min_width
        self.fill_value = fill_value
        self.p = 1.0 if always_apply else p
        if not 0 < self.min_holes <= self.max_holes:
            raise ValueError(f'need 0 < min_holes <= max_holes, got {self.min_holes}, {self.max_holes}')
        sizes = (self.min_height, self.max_height, self.min_width, self.max_width)
        if all(isinstance(v, int) for v in sizes):
            self.relative = False
        elif all(isinstance(v, float) for v in sizes):
            if not all(0 <= v < 1 for v in sizes):
                raise ValueError(f'float hole sizes must be in [0, 1), got {sizes}')
            self.relative = True
        else:
            raise ValueError(f'hole sizes must be all ints or all floats, got {sizes}')
        if not (0 < self.min_height <= self.max_height and 0 < self.min_width <= self.max_width):
            raise ValueError(f'need 0 < min <= max for hole height and width, got {sizes}')

    def holes(self, rng: np.random.Generator, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """The holes of one ``height`` x ``width`` image, drawn in albumentations' order: (y1, x1,
        hole height, hole width) px each."""
        holes = []
        count = self.min_holes  # integers(n, n + 1) is n without a draw: the call is skipped
        if self.max_holes > self.min_holes:
            count = int(rng.integers(self.min_holes, self.max_holes + 1))
        for _ in range(count):
            if self.relative:
                hole_h = int(height * rng.uniform(self.min_height, self.max_height))
                hole_w = int(width * rng.uniform(self.min_width, self.max_width))
            else:
                hole_h = int(rng.integers(self.min_height, self.max_height + 1))
                hole_w = int(rng.integers(self.min_width, self.max_width + 1))
            y1 = int(rng.integers(0, height - hole_h + 1))
            x1 = int(rng.integers(0, width - hole_w + 1))
            holes.append((y1, x1, hole_h, hole_w))
        return holes

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        img = img.copy()
        for y1, x1, hole_h, hole_w in self.holes(rng, *img.shape[:2]):
            img[y1:y1 + hole_h, x1:x1 + hole_w] = self.fill_value
        return img


class _Delegated:
    """An albumentations transform (drawing from albumentations' own random source)."""

    def __init__(self, aug: Any) -> None:
        self.aug = aug
        self.p = 1.0  # the albumentations object applies its own probability

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.aug(image=img)['image']


def _build(cfg: Mapping[str, Any]) -> Any:
    if not isinstance(cfg, Mapping) or 'type' not in cfg:
        raise TypeError(f'each Albumentation transform must be a dict with a "type", got {cfg!r}')
    name = cfg['type']
    if name in ALBUMENTATIONS:
        return ALBUMENTATIONS.build(cfg)
    args = {k: v for k, v in cfg.items() if k != 'type'}
    try:
        import albumentations
    except ImportError:
        raise ValueError(f'Albumentation transform {name!r} needs the albumentations package; built in '
                         f'without it: {ALBUMENTATIONS.names}') from None
    if not hasattr(albumentations, name):
        raise ValueError(f'albumentations has no transform {name!r}')
    if 'transforms' in args:
        args['transforms'] = [_build(t).aug for t in args['transforms']]
    return _Delegated(getattr(albumentations, name)(**args))


@TRANSFORMS.register_module()
class Albumentation(BaseTransform):
    """Apply albumentations-style image transforms in order to ``img``, each with its own ``p``.

    Args:
        transforms: dicts like ``dict(type='Blur', p=0.1)``.
        keymap: {results key: albumentations key}; only ``{'img': 'image'}`` is supported.
    """

    def __init__(self, transforms: Sequence[Mapping[str, Any]], keymap: Mapping[str, str] | None = None
                 ) -> None:
        if keymap and dict(keymap) != {'img': 'image'}:
            raise ValueError(f'Albumentation supports only keymap {{"img": "image"}}, got {dict(keymap)}')
        self.transforms = [dict(t) for t in transforms]
        self._augs = [_build(t) for t in self.transforms]

    def transform(self, results: dict) -> dict:
        rng = sample_rng(results)
        img = results['img']
        for aug in self._augs:
            if aug.p >= 1.0 or rng.random() < aug.p:
                img = aug(img, rng)
        results['img'] = img
        return results
