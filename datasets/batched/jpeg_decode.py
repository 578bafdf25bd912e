"""Decode a raw batch's JPEGs on the device: one batched ``torchvision.io.decode_jpeg`` call, on a
stream of its own, ordered before the rest of the batch.

On CUDA, torchvision decodes with nvJPEG on a private stream of its decoder and then makes the stream
current during the call wait for it; the outputs are allocated on that current stream. Decoding on a
dedicated stream, which runs no kernels of ours, keeps nvJPEG from ever writing into memory that
queued kernels still read (the caching allocator hands a block freed on a stream to the next
allocation on that stream at once); the caller's stream then waits for the decode stream, and the
outputs are recorded as used there, so the decode of batch N+1 overlaps the warps of batch N and is
ordered before its own. The decoder is first created with ``device`` current, which torchvision's
ordering relies on (it waits on the stream of the device current at creation).
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg


class JpegDecoder:
    """``decoder(jpegs)``: RGB uint8 (3, H, W) images on ``device``, one per JPEG (uint8 CPU tensors),
    ``None`` where undecodable.

    All go through one batched ``decode_jpeg`` call; if it fails, each is decoded alone, and one that
    torchvision rejects is tried with ``cv2.imdecode`` on the host, like the per-sample pipeline.
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self._stream: torch.cuda.Stream | None = None

    def __call__(self, jpegs: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
        if not jpegs:
            return []
        if self.device.type != 'cuda':
            return self._decode(jpegs)
        with torch.cuda.device(self.device):
            if self._stream is None:
                self._stream = torch.cuda.Stream(self.device)
            current = torch.cuda.current_stream(self.device)
            with torch.cuda.stream(self._stream):
                images = self._decode(jpegs)
            current.wait_stream(self._stream)
        for img in images:
            if img is not None:
                img.record_stream(current)
        return images

    def _decode(self, jpegs: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
        try:
            return list(decode_jpeg(list(jpegs), mode=ImageReadMode.RGB, device=self.device))
        except RuntimeError:  # one bad file fails the whole call: decode one by one
            return [self._decode_one(data) for data in jpegs]

    def _decode_one(self, data: torch.Tensor) -> torch.Tensor | None:
        try:
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError:  # torchvision refuses what OpenCV may still decode (e.g. a bad scan)
            img = cv2.imdecode(data.numpy(), cv2.IMREAD_COLOR)
            if img is None:
                return None
            rgb = torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)))
            if self.device.type == 'cuda':
                rgb = rgb.pin_memory()
            return rgb.to(self.device, non_blocking=True)


def size_groups(images: Sequence[torch.Tensor], budget: int) -> list[list[int]]:
    """Sample positions grouped by image size (C, H, W), in order of first appearance; a group whose
    float32 copy would exceed ``budget`` values is split (bounds the memory of one warp)."""
    by_size: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        by_size.setdefault(tuple(img.shape), []).append(i)
    groups = []
    for size, members in by_size.items():
        per_chunk = max(1, budget // max(1, int(np.prod(size))))
        groups += [members[i:i + per_chunk] for i in range(0, len(members), per_chunk)]
    return groups
