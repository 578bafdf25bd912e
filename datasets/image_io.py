"""Reading image files: one check that a file decodes completely, shared by the datasets (training,
validation, ``tools/browse_dataset.py``) and the inference API (the demo).

OpenCV decodes a truncated JPEG without an error: the missing part comes out grey and only libjpeg's
warning on stderr says so. :func:`incomplete_reason` finds such files from their bytes (a JPEG whose
entropy-coded data has no end-of-image marker after its start of scan), so they are refused by name.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator

import cv2
import numpy as np

from utils.errors import DataError

_TAIL = 4096  # bytes searched first for the end-of-image marker (it is normally the last two)


class ImageLoadError(DataError, OSError):
    """An image file that is missing, unreadable, undecodable or truncated; the message names the file."""


def jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, offset, segment length) of a JPEG's header segments, up to and including the start of
    scan (0xDA); stops early at malformed bytes. ``data`` must start with the SOI marker."""
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack('>H', data[pos + 2:pos + 4])
        yield marker, pos, length
        if marker == 0xDA:
            return
        pos += 2 + length


def incomplete_reason(data: np.ndarray) -> str | None:
    """Why the encoded image ``data`` (uint8 bytes of a file) cannot decode completely, or None.

    Detects JPEGs cut short (no end-of-image marker after the start of scan) or without image data.
    Other formats are left to the decoder (OpenCV refuses truncated PNGs itself).
    """
    if data.size < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    scan = None
    for size in (1 << 16, 1 << 20):  # the header is normally in the first few kB
        head = data[:size].tobytes()
        scan = next((pos + 2 + length for marker, pos, length in jpeg_segments(head) if marker == 0xDA), None)
        if scan is not None or data.size <= size:
            break
    if scan is None:
        return 'a JPEG without image data (no start of scan)'
    tail_start = max(0, data.size - _TAIL)
    end = data[tail_start:].tobytes().rfind(b'\xff\xd9')
    end = tail_start + end if end >= 0 else data.tobytes().rfind(b'\xff\xd9')
    if end < scan:
        return 'a truncated JPEG (the file ends before its end-of-image marker)'
    return None


def read_file_bytes(path: str) -> np.ndarray:
    """The bytes of ``path`` as a uint8 array; :class:`ImageLoadError` naming it if unreadable."""
    try:
        return np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageLoadError(f'image file not found: {path}') from None
    except OSError as e:
        raise ImageLoadError(f'cannot read image file {path}: {e.strerror or e}') from None


def check_complete(data: np.ndarray, path: str) -> None:
    """Raise :class:`ImageLoadError` naming ``path`` when its bytes ``data`` would not decode completely."""
    reason = incomplete_reason(data)
    if reason is not None:
        raise ImageLoadError(f'image file {path} is {reason}; replace or remove it')


def decode_image(data: np.ndarray, path: str, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """Decode the bytes ``data`` of image file ``path`` with ``cv2.imdecode(flags)``, refusing files that
    are empty, truncated or not images (:class:`ImageLoadError` naming ``path``)."""
    check_complete(data, path)
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None:
        raise ImageLoadError(f'cannot decode image file {path} (empty, truncated or not an image)')
    return img
