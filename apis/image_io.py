"""Reading the images given to the inference API: a file path or a BGR uint8 array."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

ImageLike = str | os.PathLike | np.ndarray


class ImageReadError(ValueError):
    """An image file that is missing or cannot be decoded, or an array that is not an image."""


def read_image(img: ImageLike) -> np.ndarray:
    """Return ``img`` as an (H, W, 3) BGR uint8 array.

    Args:
        img: a path to an image file (decoded with OpenCV, colour) or an (H, W, 3) uint8 BGR array
            (returned as is).

    Raises:
        ImageReadError: naming the file (missing or undecodable) or describing the bad array.
    """
    if isinstance(img, np.ndarray):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ImageReadError(f'expected an (H, W, 3) uint8 BGR image array, got {img.dtype} '
                                 f'array of shape {img.shape}')
        return img
    path = Path(img)
    if not path.is_file():
        raise ImageReadError(f'image file not found: {str(path)!r}')
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageReadError(f'cannot decode image file {str(path)!r} (empty, truncated or not an image)')
    return image
