"""Reading image files: one check that a file decodes completely, shared by the datasets (training,
validation, ``tools/browse_dataset.py``) and the inference API (the demo).

OpenCV decodes a truncated JPEG without an error: the missing part comes out grey and only libjpeg's
warning on stderr says so. :func:`incomplete_reason` finds such files from their bytes (a JPEG whose
entropy-coded data has no end-of-image marker after its start of scan), so they are refused by name.
"""
from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator

import cv2
import numpy as np

from utils.errors import DataError

TAIL_BYTES = 4096  # bytes searched first for the end-of-image marker (it is normally the last two)
_SEGMENT = struct.Struct('>BBH')  # 0xFF, marker, segment length
_NO_LENGTH = frozenset((0x01, *range(0xD0, 0xD9)))  # markers without a length
_READ_FLAGS = os.O_RDONLY | getattr(os, 'O_BINARY', 0)  # O_BINARY: Windows only
_readv = getattr(os, 'readv', None)


class ImageLoadError(DataError, OSError):
    """An image file that is missing, unreadable, undecodable or truncated; the message names the file."""


def jpeg_segments(data: bytes | memoryview) -> Iterator[tuple[int, int, int]]:
    """(marker, offset, segment length) of a JPEG's header segments, up to and including the start of
    scan (0xDA); stops early at malformed bytes. ``data`` (bytes, or a memoryview of bytes) must start
    with the SOI marker."""
    pos, n = 2, len(data)
    while pos + 4 <= n:
        prefix, marker, length = _SEGMENT.unpack_from(data, pos)
        if prefix != 0xFF:
            return
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _NO_LENGTH:
            pos += 2
            continue
        yield marker, pos, length
        if marker == 0xDA:
            return
        pos += 2 + length


def incomplete_reason(data: np.ndarray, scan: int | None = None) -> str | None:
    """Why the encoded image ``data`` (uint8 bytes of a file) cannot decode completely, or None.

    Detects JPEGs cut short (no end-of-image marker after the start of scan) or without image data.
    Other formats are left to the decoder (OpenCV refuses truncated PNGs itself). ``scan``: where the
    JPEG's entropy-coded data starts, when the caller already read its header (else found here).
    """
    if data.size < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    for size in (1 << 16, 1 << 20) if scan is None else ():  # the header is normally in the first few kB
        head = data[:size].tobytes()
        scan = next((pos + 2 + length for marker, pos, length in jpeg_segments(head) if marker == 0xDA), None)
        if scan is not None or data.size <= size:
            break
    if scan is None:
        return 'a JPEG without image data (no start of scan)'
    tail_start = max(0, data.size - TAIL_BYTES)
    end = data[tail_start:].tobytes().rfind(b'\xff\xd9')
    end = tail_start + end if end >= 0 else data.tobytes().rfind(b'\xff\xd9')
    if end < scan:
        return 'a truncated JPEG (the file ends before its end-of-image marker)'
    return None


def _load_error(path: str, error: OSError) -> ImageLoadError:
    if isinstance(error, FileNotFoundError):
        return ImageLoadError(f'image file not found: {path}')
    return ImageLoadError(f'cannot read image file {path}: {error.strerror or error}')


class ImageFile:
    """``with ImageFile(path) as fd``: ``path`` opened for binary reading as a file descriptor (read it with
    ``os.read`` or :func:`read_into`; opening one costs half a file object's time, and the loader workers
    open every image through it), closed at the end; an ``OSError`` while opening or reading it becomes
    an :class:`ImageLoadError` naming it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> int:
        try:
            self.fd = os.open(self.path, _READ_FLAGS)
        except OSError as e:
            raise _load_error(self.path, e) from None
        return self.fd

    def __exit__(self, kind: type | None, error: BaseException | None, traceback: object) -> None:
        os.close(self.fd)
        if isinstance(error, OSError) and not isinstance(error, ImageLoadError):
            raise _load_error(self.path, error) from None


def _readinto(fd: int, out: np.ndarray) -> int:
    if _readv is not None:  # POSIX: one system call, no file object
        return _readv(fd, [out])
    return io.FileIO(fd, 'r', closefd=False).readinto(out)  # Windows has no os.readv


def read_into(fd: int, out: np.ndarray) -> tuple[int, bytes]:
    """Read the open file ``fd`` from its position into ``out`` (uint8) up to its end: (bytes read into
    ``out``, the bytes beyond ``out``'s size: empty unless the file is longer)."""
    size = _readinto(fd, out)
    while 0 < size < out.size:  # a short read: only if the file shrank, or a signal came
        more = _readinto(fd, out[size:])
        if not more:
            break
        size += more
    rest = [os.read(fd, 1 << 16)]  # normally empty: the end of the file
    while rest[-1]:
        rest.append(os.read(fd, 1 << 16))
    return size, b''.join(rest)


def read_file_bytes(path: str) -> np.ndarray:
    """The bytes of ``path`` as a uint8 array; :class:`ImageLoadError` naming it if unreadable."""
    with ImageFile(path) as fd:  # one read into the array: half np.fromfile's time
        data = np.empty(os.fstat(fd).st_size, dtype=np.uint8)
        size, rest = read_into(fd, data)
    if size < data.size or rest:  # it changed size since fstat
        data = np.concatenate([data[:size], np.frombuffer(rest, dtype=np.uint8)])
    return data


def check_complete(data: np.ndarray, path: str, scan: int | None = None) -> None:
    """Raise :class:`ImageLoadError` naming ``path`` when its bytes ``data`` would not decode completely
    (``scan``: as for :func:`incomplete_reason`)."""
    reason = incomplete_reason(data, scan)
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
