"""A JPEG whose decoding waits until the crop is known, so it can be decoded only once, straight
into the crop, and at reduced resolution where the crop is much smaller than the box.

Geometric steps before ``TopdownAffine`` (flips) are recorded as a matrix instead of moving
pixels; ``warp`` then composes them with the crop affine and runs one ``cv2.warpAffine``.
"""
from __future__ import annotations

import struct

import cv2
import numpy as np

from datasets.image_io import ImageLoadError, jpeg_segments

_REDUCED_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                  8: cv2.IMREAD_REDUCED_COLOR_8}
_SOF_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_HEADER_BYTES = 65536 * 4  # where a JPEG's frame header is looked for (EXIF thumbnails come first)


def _exif_orientation(segment: bytes) -> int:
    """EXIF orientation tag (1..8) of an APP1 segment body starting with ``Exif\\0\\0``; 1 if none."""
    tiff = segment[6:]
    if len(tiff) < 8 or tiff[:2] not in (b'II', b'MM'):
        return 1
    end = '<' if tiff[:2] == b'II' else '>'
    (ifd,) = struct.unpack(end + 'I', tiff[4:8])
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(end + 'H', tiff[ifd:ifd + 2])
    for i in range(count):
        entry = tiff[ifd + 2 + 12 * i: ifd + 14 + 12 * i]
        if len(entry) < 12:
            break
        tag, _, _ = struct.unpack(end + 'HHI', entry[:8])
        if tag == 0x0112:
            return struct.unpack(end + 'H', entry[8:10])[0]
    return 1


def jpeg_frame(data: bytes | memoryview) -> tuple[int, int, int] | None:
    """(height, width, colour components) from a JPEG's frame header, or ``None`` if ``data`` is not a
    plain JPEG or carries a non-identity EXIF orientation (such files are decoded eagerly instead)."""
    if data[:2] != b'\xff\xd8':
        return None
    for marker, pos, length in jpeg_segments(data):
        if marker == 0xE1 and data[pos + 4:pos + 10] == b'Exif\x00\x00':
            if _exif_orientation(data[pos + 4:pos + 2 + length]) != 1:
                return None
        if marker in _SOF_MARKERS:
            if pos + 10 > len(data):
                return None
            h, w = struct.unpack('>HH', data[pos + 5:pos + 9])
            return (h, w, data[pos + 9]) if h > 0 and w > 0 else None
    return None  # start of scan before any frame header, or malformed


def jpeg_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(height, width) of a plain JPEG (see :func:`jpeg_frame`), else ``None``."""
    frame = jpeg_frame(data)
    return None if frame is None else frame[:2]


class LazyImage:
    """An undecoded JPEG of ``shape`` (h, w) plus the flips applied to it so far.

    Args:
        data: the file's bytes (uint8 array).
        shape: (h, w) of the decoded image.
        path: the file, for error messages.
        reduce_min_ratio: decode at 1/r resolution (r in 1, 2, 4, 8) only where the crop samples
            at least ``reduce_min_ratio * r`` source pixels per output pixel; ``None`` never does.
    """

    def __init__(self, data: np.ndarray, shape: tuple[int, int], path: str,
                 reduce_min_ratio: float | None = None) -> None:
        self.data = data
        self.shape = (int(shape[0]), int(shape[1]), 3)
        self.path = path
        self.reduce_min_ratio = reduce_min_ratio
        self.pre = np.eye(3)  # original image px -> current (flipped) image px

    def flipped(self, direction: str) -> LazyImage:
        """A copy that behaves like the image mirrored in ``direction`` (as ``cv2.flip``)."""
        h, w = self.shape[:2]
        flip = np.eye(3)
        if direction in ('horizontal', 'diagonal'):
            flip[0, 0], flip[0, 2] = -1.0, w - 1.0
        if direction in ('vertical', 'diagonal'):
            flip[1, 1], flip[1, 2] = -1.0, h - 1.0
        out = LazyImage(self.data, self.shape[:2], self.path, self.reduce_min_ratio)
        out.pre = flip @ self.pre
        return out

    def _decode(self, factor: int) -> np.ndarray:
        img = cv2.imdecode(self.data, _REDUCED_FLAGS[factor])
        if img is None:
            raise ImageLoadError(f'cannot decode image file {self.path}')
        return img

    def decode(self) -> np.ndarray:
        """The full-resolution BGR uint8 image (h, w, 3), flips applied."""
        img = self._decode(1)
        flip_x, flip_y = self.pre[0, 0] < 0, self.pre[1, 1] < 0
        if flip_x or flip_y:
            img = cv2.flip(img, -1 if flip_x and flip_y else (1 if flip_x else 0))
        return img

    def reduction_for(self, warp_mat: np.ndarray) -> int:
        """The decode reduction r for a crop affine (current image px -> output px)."""
        if not self.reduce_min_ratio:
            return 1
        src_per_out = 1.0 / np.sqrt(abs(np.linalg.det(np.asarray(warp_mat, np.float64)[:, :2])))
        factor = 1
        while factor < 8 and src_per_out >= self.reduce_min_ratio * factor * 2:
            factor *= 2
        return factor

    def warp(self, warp_mat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """``cv2.warpAffine(flipped image, warp_mat, size)`` (bilinear, black border) without
        decoding more than needed. ``warp_mat``: 2x3, current image px -> output px; size (w, h)."""
        total = np.vstack([np.asarray(warp_mat, np.float64), [0.0, 0.0, 1.0]]) @ self.pre
        factor = self.reduction_for(warp_mat)
        img = self._decode(factor)
        if factor > 1:  # reduced pixel i covers original pixels [r*i, r*i + r)
            expand = np.array([[factor, 0.0, (factor - 1) / 2], [0.0, factor, (factor - 1) / 2],
                               [0.0, 0.0, 1.0]])
            total = total @ expand
        return cv2.warpAffine(img, total[:2], size, flags=cv2.INTER_LINEAR)
