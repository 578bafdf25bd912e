"""JPEG frame headers read in the loader workers: the size, and which files go to the device decoder
(baseline or progressive 8-bit, 1 or 3 components, no EXIF rotation) and which the worker decodes
with OpenCV (lossless, arithmetic-coded, 12-bit, CMYK, rotated, other formats)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from datasets.batched.host_sample import read_image_source
from datasets.image_io import jpeg_segments
from datasets.jpeg_header import jpeg_frame
from datasets.transforms import ImageLoadError


def _jpeg(shape=(30, 50, 3), progressive: bool = False) -> bytes:
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    return cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])[1].tobytes()


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    tiff = b'MM\x00\x2a\x00\x00\x00\x08' + b'\x00\x01' + b'\x01\x12\x00\x03\x00\x00\x00\x01'
    tiff += orientation.to_bytes(2, 'big') + b'\x00\x00' + b'\x00\x00\x00\x00'
    body = b'Exif\x00\x00' + tiff
    return jpeg[:2] + b'\xff\xe1' + (len(body) + 2).to_bytes(2, 'big') + body + jpeg[2:]


def _patched_frame(jpeg: bytes, marker: int | None = None, precision: int | None = None) -> bytes:
    """``jpeg`` with its start-of-frame marker and/or sample precision rewritten (header only)."""
    data = bytearray(jpeg)
    pos = next(p for m, p, _ in jpeg_segments(jpeg) if m in (0xC0, 0xC2))
    if marker is not None:
        data[pos + 1] = marker
    if precision is not None:
        data[pos + 4] = precision
    return bytes(data)


def test_frame_size_and_exif_rotation():
    jpeg = _jpeg()
    assert jpeg_frame(jpeg)[:3] == (30, 50, 3)
    assert jpeg_frame(_with_exif_orientation(jpeg, 1))[:2] == (30, 50)
    assert jpeg_frame(_with_exif_orientation(jpeg, 6)) is None  # rotated: OpenCV decodes it in the worker
    assert jpeg_frame(cv2.imencode('.png', np.zeros((4, 4, 3), np.uint8))[1].tobytes()) is None


@pytest.mark.parametrize('marker, precision, components, decodable', [
    (0xC0, 8, 3, True), (0xC2, 8, 3, True), (0xC1, 8, 3, True), (0xC0, 8, 1, True),
    (0xC3, 8, 3, False),  # lossless
    (0xC9, 8, 3, False), (0xCA, 8, 3, False),  # arithmetic-coded sequential / progressive
    (0xC1, 12, 3, False), (0xC2, 12, 3, False),  # 12-bit samples
    (0xC0, 8, 4, False)])  # CMYK
def test_only_baseline_and_progressive_8_bit_go_to_the_device(marker, precision, components, decodable):
    shape = (30, 50) if components == 1 else (30, 50, 3)
    data = _patched_frame(_jpeg(shape), marker, precision)
    if components == 4:
        pos = next(p for m, p, _ in jpeg_segments(data) if m == 0xC0)
        data = data[:pos + 9] + bytes([4]) + data[pos + 10:]
    frame = jpeg_frame(data)
    assert (frame.marker, frame.precision, frame.components) == (marker, precision, components)
    assert frame.device_decodable is decodable


def test_worker_decodes_what_the_device_decoder_may_not(tmp_path):
    (tmp_path / 'progressive.jpg').write_bytes(_jpeg(progressive=True))
    jpeg, image, hw = read_image_source(str(tmp_path / 'progressive.jpg'))
    assert jpeg is not None and image is None and hw == (30, 50)
    (tmp_path / 'rotated.jpg').write_bytes(_with_exif_orientation(_jpeg(), 6))
    jpeg, image, hw = read_image_source(str(tmp_path / 'rotated.jpg'))
    assert jpeg is None and image.shape == (50, 30, 3) and hw == (50, 30)  # OpenCV applied the rotation
    # a lossless frame header over baseline data: routed to OpenCV, which names the file it cannot decode
    (tmp_path / 'lossless.jpg').write_bytes(_patched_frame(_jpeg(), marker=0xC3))
    with pytest.raises(ImageLoadError, match='lossless.jpg'):
        read_image_source(str(tmp_path / 'lossless.jpg'))


def test_device_decode_runs_on_its_own_stream_ordered_before_use(monkeypatch):
    # the CUDA calls, recorded: nvJPEG's outputs must be ordered before the caller's stream uses
    # them, and the decode must not run on the caller's stream (whose freed memory it could overwrite)
    from contextlib import contextmanager

    import torch

    import datasets.batched.jpeg_decode as jpeg_decode

    log, active = [], []

    class Stream:
        def __init__(self, name):
            self.name = name

        def wait_stream(self, other):
            log.append(('wait', self.name, other.name))

    class Image:
        def record_stream(self, stream):
            log.append(('record', stream.name))

    caller = Stream('caller')

    @contextmanager
    def use_stream(stream):
        active.append(stream)
        yield
        active.pop()

    @contextmanager
    def use_device(device):
        log.append(('device', str(device)))
        yield

    def decode_jpeg(data, mode, device):
        log.append(('decode', active[-1].name if active else 'caller', str(device), len(data)))
        return [Image() for _ in data]

    monkeypatch.setattr(torch.cuda, 'Stream', lambda device: Stream('decode'))
    monkeypatch.setattr(torch.cuda, 'current_stream', lambda device=None: caller)
    monkeypatch.setattr(torch.cuda, 'stream', use_stream)
    monkeypatch.setattr(torch.cuda, 'device', use_device)
    monkeypatch.setattr(jpeg_decode, 'decode_jpeg', decode_jpeg)
    decoder = jpeg_decode.JpegDecoder('cuda:1')
    for _ in range(2):
        images = decoder([torch.zeros(4, dtype=torch.uint8)] * 3)
        assert len(images) == 3
    batch = [('device', 'cuda:1'), ('decode', 'decode', 'cuda:1', 3), ('wait', 'caller', 'decode'),
             *[('record', 'caller')] * 3]
    assert log == batch * 2
