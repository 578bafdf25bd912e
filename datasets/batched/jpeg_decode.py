"""Decode a raw batch's images on the device: batched ``torchvision.io.decode_jpeg`` for plain JPEGs,
the loader's OpenCV decode for the rest, all pasted into one zero-padded canvas."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg


def _decode_each(jpegs: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    out: list[torch.Tensor | None] = []
    for data in jpegs:
        try:
            out.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:  # torchvision refuses what OpenCV may still decode (e.g. a bad scan)
            img = cv2.imdecode(data.numpy(), cv2.IMREAD_COLOR)
            out.append(None if img is None else
                       torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))).to(device))
    return out


def decode_batch(jpegs: Sequence[torch.Tensor | None], images: Sequence[torch.Tensor | None],
                 device: torch.device) -> list[torch.Tensor | None]:
    """RGB uint8 (3, H, W) images on ``device``, one per sample; ``None`` where undecodable.

    Args:
        jpegs: per sample, the bytes (uint8 CPU tensor) of a plain JPEG, or ``None``.
        images: per sample, an image the loader decoded with OpenCV (BGR uint8 (H, W, 3)), or ``None``.

    All JPEGs go through one batched ``decode_jpeg`` call; if it fails, each is decoded alone and
    any that torchvision rejects is tried with ``cv2.imdecode`` on the host, like the per-sample
    pipeline.
    """
    out: list[torch.Tensor | None] = [None] * len(jpegs)
    index = [i for i, data in enumerate(jpegs) if data is not None]
    if index:
        try:
            decoded = decode_jpeg([jpegs[i] for i in index], mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            decoded = _decode_each([jpegs[i] for i in index], device)
        for i, img in zip(index, decoded):
            out[i] = img
    for i, img in enumerate(images):
        if img is not None:
            out[i] = img.to(device, non_blocking=True).permute(2, 0, 1).flip(0)
    return out


def paste_canvas(images: Sequence[torch.Tensor], device: torch.device,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, 3, max H, max W) of ``dtype`` on ``device`` with image i (3, H_i, W_i) in its top-left corner
    and zeros around it (converted while copied: no separate uint8 canvas)."""
    height = max(img.shape[1] for img in images)
    width = max(img.shape[2] for img in images)
    canvas = torch.empty((len(images), 3, height, width), dtype=dtype, device=device)
    for i, img in enumerate(images):
        h, w = img.shape[1:]
        canvas[i, :, :h, :w] = img
        canvas[i, :, h:] = 0
        canvas[i, :, :h, w:] = 0
    return canvas
