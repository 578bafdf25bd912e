"""LoadImage: read the sample's image file as BGR uint8 (eagerly, or lazily for top-down crops)."""
from __future__ import annotations

import cv2
import numpy as np

from datasets.image_io import ImageLoadError, check_complete, decode_image, read_file_bytes
from datasets.image_size import fit_image_size
from datasets.transforms.base import BaseTransform
from datasets.transforms.lazy_image import JPEG_HEADER_BYTES, LazyImage, jpeg_size
from utils.registry import TRANSFORMS

_COLOR_FLAGS = {'color': cv2.IMREAD_COLOR, 'grayscale': cv2.IMREAD_GRAYSCALE,
                'unchanged': cv2.IMREAD_UNCHANGED}


@TRANSFORMS.register_module()
class LoadImage(BaseTransform):
    """Load ``results['img_path']`` into ``img`` (h, w, 3) BGR uint8; set ``img_shape``/``ori_shape``
    (h, w). An ``img`` array already in ``results`` is used as is (``img_path`` defaults to None).

    Args:
        to_float32: convert the image to float32.
        color_type: 'color' (cv2.IMREAD_COLOR, like MMPose), 'grayscale' or 'unchanged'.
        reduce_min_ratio: for lazily decoded JPEGs, decode at 1/r size (r = 2, 4, 8) when the crop
            samples at least ``reduce_min_ratio * r`` source pixels per output pixel. ``None`` (the
            default) never does, so crops equal MMPose's exactly; at 2.0 the 1/r decode (an r x r
            average) blurs less than a tenth of the contrast at the crop's Nyquist frequency.

    ``lazy`` is set by :class:`~datasets.transforms.base.Compose` when the pipeline allows it: the
    JPEG is then read but decoded only by ``TopdownAffine`` (:class:`LazyImage`).
    Raises :class:`ImageLoadError` naming the file when it is missing, truncated or cannot be decoded.
    """

    def __init__(self, to_float32: bool = False, color_type: str = 'color',
                 imdecode_backend: str = 'cv2', reduce_min_ratio: float | None = None,
                 ignore_empty: bool = False) -> None:
        if color_type not in _COLOR_FLAGS:
            raise ValueError(f'color_type must be one of {sorted(_COLOR_FLAGS)}, got {color_type!r}')
        if imdecode_backend != 'cv2':
            raise ValueError(f"only imdecode_backend='cv2' is supported, got {imdecode_backend!r}")
        self.to_float32 = to_float32
        self.color_type = color_type
        self.reduce_min_ratio = reduce_min_ratio
        self.ignore_empty = ignore_empty
        self.lazy = False

    def transform(self, results: dict) -> dict | None:
        if results.get('img') is not None:
            img = results['img']
            if not isinstance(img, np.ndarray):
                raise TypeError(f'results["img"] must be a numpy array, got {type(img).__name__}')
            results.setdefault('img_path', None)
        else:
            path = results.get('img_path')
            if path is None:
                raise KeyError('LoadImage needs "img_path" or "img" in the sample')
            try:
                data = read_file_bytes(str(path))
            except ImageLoadError:
                if self.ignore_empty:
                    return None
                raise
            img = fit_image_size(results, self._load(data, str(path)), str(path))  # datasets/image_size.py
        if self.to_float32 and isinstance(img, np.ndarray):
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = tuple(img.shape[:2])
        results['ori_shape'] = tuple(img.shape[:2])
        return results

    def _load(self, data: np.ndarray, path: str) -> np.ndarray | LazyImage:
        if self.lazy and self.color_type == 'color' and not self.to_float32:
            shape = jpeg_size(memoryview(data)[:JPEG_HEADER_BYTES]) if data.size else None  # no copy
            if shape is not None:
                check_complete(data, path)
                return LazyImage(data, shape, path, self.reduce_min_ratio)
        return decode_image(data, path, _COLOR_FLAGS[self.color_type])
