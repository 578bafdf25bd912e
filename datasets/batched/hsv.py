"""OpenCV's uint8 BGR <-> HSV conversions for whole image batches, on any device (tensor ops only).

- BGR -> HSV equals OpenCV's uint8 kernel for all 2^24 colours.
- HSV -> BGR equals OpenCV 4.x's vectorised uint8 kernel (x86 AVX2/AVX-512 builds: float32 arithmetic
  with fused multiply-adds, truncation) for all 2^24 inputs; OpenCV converts the last (W mod 32)
  pixels of each row with a scalar loop that rounds instead, so for widths that are not a multiple of
  32 those pixels may differ by one grey level.
"""
from __future__ import annotations

import torch

_HSV_SHIFT = 12


def bgr_to_hsv(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 BGR -> uint8 HSV (hue in [0, 180)), exactly as ``cv2.COLOR_BGR2HSV``."""
    b, g, r = images.to(torch.int32).unbind(1)
    v = torch.maximum(torch.maximum(b, g), r)
    diff = v - torch.minimum(torch.minimum(b, g), r)
    levels = torch.arange(256, device=images.device, dtype=torch.float64)
    safe = levels.clamp(min=1)  # OpenCV's fixed-point reciprocal tables; entry 0 is 0
    sdiv = torch.where(levels > 0, torch.round((255 << _HSV_SHIFT) / safe), 0).to(torch.int32)
    hdiv = torch.where(levels > 0, torch.round((180 << _HSV_SHIFT) / (6 * safe)), 0).to(torch.int32)
    half = 1 << (_HSV_SHIFT - 1)
    s = (diff * sdiv[v] + half) >> _HSV_SHIFT
    h = torch.where(v == r, g - b, torch.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * hdiv[diff] + half) >> _HSV_SHIFT
    h = torch.where(h < 0, h + 180, h)
    return torch.stack([h, s, v], 1).to(torch.uint8)


# For each hue sector, which of (v, v(1-s), v(1-sf), v(1-s(1-f))) is blue, green and red; packed as
# 2-bit digits (one per sector) per channel so that a device computes the lookup without a table copy.
_SECTOR_CHANNELS = ((1, 3, 0), (1, 0, 2), (3, 0, 1), (0, 2, 1), (0, 1, 3), (2, 1, 0))
_SECTOR_CODES = tuple(sum(row[c] << (2 * i) for i, row in enumerate(_SECTOR_CHANNELS)) for c in range(3))


def _one_minus_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """float32 ``1 - a * b`` rounded once, as the fused multiply-add of OpenCV's vector kernel."""
    return (1.0 - a.to(torch.float64) * b.to(torch.float64)).to(torch.float32)


def hsv_to_bgr(hsv: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 HSV (hue in half degrees; 180..255 wrap) -> uint8 BGR, as
    ``cv2.COLOR_HSV2BGR`` (see the module docstring for its row-tail rounding)."""
    h, s, v = hsv.to(torch.float32).unbind(1)
    s = s * (1.0 / 255.0)
    v = v * (1.0 / 255.0)
    h = h * (6.0 / 180.0)
    sector = torch.trunc(h)
    frac = h - sector
    sector = (sector - torch.trunc(sector * (1.0 / 6.0)) * 6.0).to(torch.int64)
    tab = torch.stack([v, v * (1.0 - s), v * _one_minus_product(s, frac),
                       v * _one_minus_product(s, 1.0 - frac)], 1)  # (B, 4, H, W)
    channels = torch.stack([(torch.full_like(sector, code) >> (2 * sector)) & 3 for code in _SECTOR_CODES], 1)
    return torch.trunc(torch.gather(tab, 1, channels) * 255.0).clamp_(0, 255).to(torch.uint8)
