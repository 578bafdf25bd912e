"""Read a JPEG's frame header on the host (in the loader workers): its size, and whether the device
decoder may decode it.

``torchvision.io.decode_jpeg(device='cuda')`` (nvJPEG) decodes baseline and progressive 8-bit
Huffman-coded JPEGs with 1 or 3 colour components; anything else (lossless, arithmetic-coded,
12-bit, CMYK, EXIF-rotated) it refuses or decodes differently from OpenCV, so the worker decodes
those with OpenCV, as ``LoadImage`` does, instead of letting one such file send the whole batch to
one-by-one decoding.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from datasets.image_io import jpeg_segments

# Start-of-frame markers (0xC4 DHT, 0xC8 JPG and 0xCC DAC share the range but are not frames).
_SOF_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_DEVICE_MARKERS = {0xC0: 'baseline', 0xC1: 'extended', 0xC2: 'progressive'}
HEADER_BYTES = 65536 * 4  # where a JPEG's frame header is looked for (EXIF thumbnails come first)
_FRAME = struct.Struct('>BHHB')  # precision, height, width, components


class JpegFrame(NamedTuple):
    """A JPEG's frame header: size in px, colour components, start-of-frame marker (0xC0 baseline,
    0xC1 extended sequential, 0xC2 progressive, 0xC3 lossless, 0xC9.. arithmetic-coded), sample
    precision in bits, and ``scan``: the offset where the entropy-coded data of its first scan starts
    (``None`` if the data read ends before the start-of-scan header)."""

    height: int
    width: int
    components: int
    marker: int
    precision: int
    scan: int | None = None

    @property
    def device_decodable(self) -> bool:
        """Baseline or progressive (and 8-bit extended sequential, which decodes as baseline) with
        8-bit samples and 1 or 3 components: what the device decoder reads as OpenCV does."""
        return self.marker in _DEVICE_MARKERS and self.precision == 8 and self.components in (1, 3)


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


def jpeg_frame(data: bytes | memoryview) -> JpegFrame | None:
    """The frame header of a JPEG (looked for in ``data``, e.g. its first :data:`HEADER_BYTES`), or
    ``None`` if ``data`` is not a JPEG, is malformed, or carries a non-identity EXIF orientation
    (OpenCV rotates such images while decoding)."""
    if data[:2] != b'\xff\xd8':
        return None
    frame = None
    for marker, pos, length in jpeg_segments(data):
        if frame is None and marker == 0xE1 and data[pos + 4:pos + 10] == b'Exif\x00\x00':
            if _exif_orientation(bytes(data[pos + 4:pos + 2 + length])) != 1:
                return None
        elif frame is None and marker in _SOF_MARKERS:
            if pos + 10 > len(data):
                return None
            precision, h, w, components = _FRAME.unpack_from(data, pos + 4)
            if h == 0 or w == 0:
                return None
            frame = (h, w, components, marker, precision)
        elif marker == 0xDA:
            return JpegFrame(*frame, pos + 2 + length) if frame is not None else None
    return JpegFrame(*frame) if frame is not None else None  # the data ends before the start of scan
