"""LoadImage: read the sample's image file as BGR uint8."""
from __future__ import annotations

import cv2
import numpy as np

from datasets.image_io import ImageLoadError, decode_image, read_file_bytes
from datasets.image_size import fit_image_size
from datasets.transforms.base import BaseTransform
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

    Raises :class:`ImageLoadError` naming the file when it is missing, truncated or cannot be decoded.
    """

    def __init__(self, to_float32: bool = False, color_type: str = 'color',
                 imdecode_backend: str = 'cv2', ignore_empty: bool = False) -> None:
        if color_type not in _COLOR_FLAGS:
            raise ValueError(f'color_type must be one of {sorted(_COLOR_FLAGS)}, got {color_type!r}')
        if imdecode_backend != 'cv2':
            raise ValueError(f"only imdecode_backend='cv2' is supported, got {imdecode_backend!r}")
        self.to_float32 = to_float32
        self.color_type = color_type
        self.ignore_empty = ignore_empty

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
            img = fit_image_size(results, decode_image(data, str(path), _COLOR_FLAGS[self.color_type]),
                                 str(path))
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = tuple(img.shape[:2])
        results['ori_shape'] = tuple(img.shape[:2])
        return results
