"""Photometric augmentations of whole uint8 image batches, on any device.

Each class mirrors one per-sample transform of :mod:`datasets.transforms` (``YOLOXHSVRandomAug``,
``PhotometricDistortion``) or one ``Albumentation`` member (``Blur``, ``MedianBlur``,
``CoarseDropout``), takes the same config keyword arguments, and splits it in two:

- ``draw(rng)`` runs on the host (in loader workers) and draws one sample's random parameters with the
  same generator calls, in the same order, as the per-sample transform: a generator in a given state
  yields the same parameters and is left in the same state, so the rest of the sample's pipeline
  draws what it would draw per sample. It returns a dict with fixed keys, dtypes and shapes per
  class, so :func:`stack_params` can stack samples.
- ``apply(images, params)`` runs on the batch's device: ``images`` is (B, 3, H, W) uint8 BGR,
  ``params`` the stacked (B, ...) tensors on the same device; it returns a new (B, 3, H, W) uint8
  batch, using tensor ops only (no loop over samples, no host read-back, so CUDA never syncs).

Agreement with the per-sample OpenCV path (tests/test_batched_photometric.py):

- BGR -> HSV equals OpenCV's uint8 kernel for all 2^24 colours. HSV -> BGR equals OpenCV 4.x's
  vectorised uint8 kernel (x86 AVX2/AVX-512 builds: float32 arithmetic with fused multiply-adds,
  truncation) for all 2^24 inputs; OpenCV converts the last (W mod 32) pixels of each row with a
  scalar loop that rounds instead, so for widths that are not a multiple of 32 those pixels may
  differ by one grey level.
- Brightness, contrast, saturation, hue shift, channel swap, the HSV lookup table, Blur,
  MedianBlur and CoarseDropout are bit-exact.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from datasets.transforms.albumentation import Albumentation, Blur, CoarseDropout, MedianBlur
from datasets.transforms.photometric import PhotometricDistortion, YOLOXHSVRandomAug

Params = dict[str, Any]  # one sample's parameters: numpy scalars / arrays of fixed dtype and shape


class UnsupportedTransformError(ValueError):
    """A transform type with no batched implementation; ``transform_type`` holds its name."""

    def __init__(self, transform_type: str, detail: str = '') -> None:
        self.transform_type = transform_type
        supported = sorted(_TRANSFORMS) + [f'Albumentation({name})' for name in sorted(_MEMBERS)]
        super().__init__(f'transform {transform_type!r} has no batched implementation{detail} '
                         f'(batched: {", ".join(supported)})')


def stack_params(samples: Sequence[Mapping[str, Any]], device: torch.device | str | None = None
                 ) -> dict[str, torch.Tensor]:
    """Stack the ``draw`` dicts of B samples (one transform) into (B, ...) tensors on ``device``.

    Dtypes are kept (float params are float32, integer ones int64, flags bool); ``device=None``
    leaves them on the CPU (e.g. in a collate function, before pinning and an asynchronous copy).
    """
    if not samples:
        raise ValueError('stack_params needs at least one sample')
    keys = list(samples[0])
    for i, sample in enumerate(samples):
        if set(sample) != set(keys):
            raise ValueError(f'sample {i} has parameters {sorted(sample)}, sample 0 has {sorted(keys)}')
    return {k: torch.from_numpy(np.stack([np.asarray(s[k]) for s in samples])).to(device) for k in keys}


def _applied(rng: np.random.Generator, p: float) -> bool:
    """An Albumentation member's coin, drawn exactly as ``Albumentation.transform`` draws it."""
    return p >= 1.0 or rng.random() < p


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) ``values`` shaped to broadcast against ``like`` (B, ...)."""
    return values.view(-1, *[1] * (like.dim() - 1))


def _convert(images: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """uint8 ``clip(images * alpha + beta, 0, 255)`` in float32, truncated (per-sample ``_convert``)."""
    out = images.to(torch.float32) * _per_sample(alpha, images) + _per_sample(beta, images)
    return out.clamp_(0, 255).to(torch.uint8)


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


class BatchedPhotometric:
    """The batched-transform interface: ``draw`` one sample's parameters, ``apply`` a batch."""

    def draw(self, rng: np.random.Generator) -> Params:
        """One sample's random parameters, drawn from ``rng`` as the per-sample transform draws them."""
        raise NotImplementedError

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B, 3, H, W) uint8 BGR ``images`` with stacked ``params`` -> a new (B, 3, H, W) uint8 batch."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.reference!r})'


class BatchedYOLOXHSVRandomAug(BatchedPhotometric):
    """:class:`~datasets.transforms.photometric.YOLOXHSVRandomAug` (same keyword arguments).

    Params: ``gains`` (3,) int16, the (hue, saturation, value) offsets.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.reference = YOLOXHSVRandomAug(**kwargs)

    def draw(self, rng: np.random.Generator) -> Params:
        return {'gains': self.reference.get_gains(rng)}

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        lut = torch.arange(256, device=images.device) + params['gains'].long()[:, :, None]  # (B, 3, 256)
        lut = torch.cat([lut[:, :1] % 180, lut[:, 1:].clamp(0, 255)], 1)  # hue wraps, the rest clips
        hsv = bgr_to_hsv(images)
        hsv = torch.gather(lut, 2, hsv.flatten(2).long()).view_as(hsv).to(torch.uint8)
        return hsv_to_bgr(hsv)


class BatchedPhotometricDistortion(BatchedPhotometric):
    """:class:`~datasets.transforms.photometric.PhotometricDistortion` (same keyword arguments).

    Params (steps that are off hold their identity value): ``beta`` float32 brightness offset,
    ``alpha`` float32 contrast factor (applied before and after the HSV step, as MMPose 1.3.2),
    ``hsv`` bool whether the HSV round trip runs, ``saturation`` float32 factor, ``hue`` int64
    offset (half degrees, wraps modulo 256), ``order`` (3,) int64 output channel order.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.reference = PhotometricDistortion(**kwargs)

    def draw(self, rng: np.random.Generator) -> Params:
        ref = self.reference
        contrast_mode, brightness_flag, contrast_flag, swap_flag = rng.integers(0, 2, 4)
        hsv_mode = rng.integers(0, 4)
        beta = rng.uniform(-ref.brightness_delta, ref.brightness_delta)
        alpha = rng.uniform(ref.contrast_lower, ref.contrast_upper)
        saturation = rng.uniform(ref.saturation_lower, ref.saturation_upper)
        hue = int(rng.integers(-ref.hue_delta, ref.hue_delta))
        order = rng.permutation(3)
        return {
            'beta': np.float32(beta if brightness_flag else 0.0),
            'alpha': np.float32(alpha if contrast_mode == 1 and contrast_flag else 1.0),
            'hsv': np.bool_(hsv_mode != 0),
            'saturation': np.float32(saturation if hsv_mode in (1, 3) else 1.0),
            'hue': np.int64(hue if hsv_mode in (2, 3) else 0),
            'order': order if swap_flag else np.arange(3),
        }

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        one, zero = torch.ones_like(params['alpha']), torch.zeros_like(params['beta'])
        img = _convert(_convert(images, one, params['beta']), params['alpha'], zero)
        hue, saturation, value = bgr_to_hsv(img).unbind(1)
        saturation = _convert(saturation, params['saturation'], zero)
        hue = ((hue.long() + _per_sample(params['hue'], hue)) % 256).to(torch.uint8)
        shifted = hsv_to_bgr(torch.stack([hue, saturation, value], 1))
        img = torch.where(_per_sample(params['hsv'], img), shifted, img)
        img = _convert(img, params['alpha'], zero)
        order = params['order'].long()[:, :, None, None].expand_as(img)
        return torch.gather(img, 1, order)


def _padding_index(size: int, before: int, after: int, mode: str, device: torch.device) -> torch.Tensor:
    """Source index of each position of a padded axis, (before + size + after,) int64:
    ``reflect101`` (OpenCV's default border, ``gfedcb|abcdefgh|gfedcba``) or ``replicate``."""
    index = torch.arange(-before, size + after, device=device)
    if mode == 'replicate':
        return index.clamp(0, size - 1)
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


def _box_blur(images: torch.Tensor, ksize: torch.Tensor, max_ksize: int) -> torch.Tensor:
    """``cv2.blur(img, (k, k))`` with each sample's own ``ksize`` (B,) (1 = unchanged), one pass:
    integer box sums from an integral image of the reflect-101-padded batch, rounded to nearest."""
    batch, channels, height, width = images.shape
    pad = max_ksize // 2
    rows = _padding_index(height, pad, pad, 'reflect101', images.device)
    cols = _padding_index(width, pad, pad, 'reflect101', images.device)
    padded = images.index_select(2, rows).index_select(3, cols).to(torch.int32)
    integral = torch.nn.functional.pad(padded.cumsum(2).cumsum(3), (1, 0, 1, 0))  # (B, C, H+2P+1, W+2P+1)
    ksize = ksize.long()
    first = pad - ksize // 2  # (B,) offset of the window's first row/column in padded coordinates

    def window_sum(table: torch.Tensor, dim: int, size: int) -> torch.Tensor:
        start = torch.arange(size, device=images.device) + first[:, None]  # (B, size)
        shape = [batch, 1, 1, 1]
        shape[dim] = size
        index_shape = list(table.shape)
        index_shape[dim] = size
        lo = start.view(shape).expand(index_shape)
        return torch.gather(table, dim, lo + _per_sample(ksize, lo)) - torch.gather(table, dim, lo)

    sums = window_sum(window_sum(integral, 2, height), 3, width)
    area = _per_sample(ksize * ksize, sums)
    return torch.div(2 * sums + area, 2 * area, rounding_mode='floor').to(torch.uint8)


def _median_blur(images: torch.Tensor, ksize: torch.Tensor, max_ksize: int) -> torch.Tensor:
    """``cv2.medianBlur(img, k)`` (replicated border) with each sample's own odd ``ksize`` (B,)
    (1 = unchanged).

    Every pixel takes the median of its max_ksize^2 window in which the positions outside its
    sample's k x k window are replaced, half by 0 and half by 255: that leaves the median unchanged,
    so one median over a fixed window size serves every kernel size.
    """
    _, _, height, width = images.shape
    pad = max_ksize // 2
    rows = _padding_index(height, pad, pad, 'replicate', images.device)
    cols = _padding_index(width, pad, pad, 'replicate', images.device)
    padded = images.index_select(2, rows).index_select(3, cols)
    windows = torch.stack([padded[:, :, dy:dy + height, dx:dx + width]
                           for dy in range(max_ksize) for dx in range(max_ksize)], -1)  # (B, C, H, W, K*K)
    offsets = torch.arange(max_ksize, device=images.device) - pad
    ring = torch.maximum(offsets.abs()[:, None], offsets.abs()[None, :]).flatten()  # (K*K,) Chebyshev radius
    outside = ring[None, :] > (ksize.long() // 2)[:, None]  # (B, K*K), an even count per sample
    low = outside & (outside.cumsum(1) % 2 == 1)
    windows.masked_fill_(low[:, None, None, None], 0)
    windows.masked_fill_((outside & ~low)[:, None, None, None], 255)
    return windows.median(-1).values


class BatchedBlur(BatchedPhotometric):
    """The ``Albumentation`` member :class:`~datasets.transforms.albumentation.Blur` (same keyword
    arguments, including ``p``). Params: ``ksize`` int64, the kernel size (px); 1 when not applied."""

    reference_type: type = Blur

    def __init__(self, **kwargs: Any) -> None:
        self.reference = self.reference_type(**kwargs)
        if self.reference.limits[0] % 2 == 0:  # OpenCV rounds even-size box means its own way
            raise UnsupportedTransformError(self.reference_type.__name__,
                                            f' for even kernel sizes (blur_limit {self.reference.limits})')

    def draw(self, rng: np.random.Generator) -> Params:
        return {'ksize': np.int64(self.reference.kernel_size(rng) if _applied(rng, self.reference.p) else 1)}

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return _box_blur(images, params['ksize'], self.reference.limits[1])


class BatchedMedianBlur(BatchedBlur):
    """The ``Albumentation`` member :class:`~datasets.transforms.albumentation.MedianBlur` (same keyword
    arguments, including ``p``). Params: ``ksize`` int64, the odd kernel size (px); 1 when not applied."""

    reference_type = MedianBlur

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return _median_blur(images, params['ksize'], self.reference.limits[1])


class BatchedCoarseDropout(BatchedPhotometric):
    """The ``Albumentation`` member :class:`~datasets.transforms.albumentation.CoarseDropout` (same
    keyword arguments, including ``p``), for images of ``image_size`` = (w, h) px (the size
    ``TopdownAffine`` crops to), which the hole positions are drawn for.

    Params: ``holes`` (max_holes, 4) int64 rows (y1, x1, height, width) in px; rows of unused
    holes, and all rows when not applied, have zero size.
    """

    def __init__(self, image_size: Sequence[int] | None = None, **kwargs: Any) -> None:
        self.reference = CoarseDropout(**kwargs)
        if image_size is None or len(image_size) != 2:
            raise ValueError(f'CoarseDropout needs image_size=(w, h) of the images it drops holes in '
                             f'(the TopdownAffine input_size), got {image_size!r}')
        self.image_size = (int(image_size[0]), int(image_size[1]))
        fill = np.empty(3, np.uint8)
        fill[...] = self.reference.fill_value  # numpy's cast, as the per-sample assignment
        self.fill = tuple(int(v) for v in fill)

    def draw(self, rng: np.random.Generator) -> Params:
        ref = self.reference
        width, height = self.image_size
        holes = np.zeros((ref.max_holes, 4), np.int64)
        if _applied(rng, ref.p):
            for i in range(int(rng.integers(ref.min_holes, ref.max_holes + 1))):
                if ref.relative:
                    hole_h = int(height * rng.uniform(ref.min_height, ref.max_height))
                    hole_w = int(width * rng.uniform(ref.min_width, ref.max_width))
                else:
                    hole_h = int(rng.integers(ref.min_height, ref.max_height + 1))
                    hole_w = int(rng.integers(ref.min_width, ref.max_width + 1))
                y1 = int(rng.integers(0, height - hole_h + 1))
                x1 = int(rng.integers(0, width - hole_w + 1))
                holes[i] = y1, x1, hole_h, hole_w
        return {'holes': holes}

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        height, width = images.shape[2:]
        if (width, height) != self.image_size:
            raise ValueError(f'CoarseDropout was built for {self.image_size} (w, h) images, '
                             f'got {width}x{height}')
        y1, x1, hole_h, hole_w = params['holes'].long().unbind(-1)  # (B, N) each
        rows = torch.arange(height, device=images.device)
        cols = torch.arange(width, device=images.device)
        in_rows = (rows >= y1[..., None]) & (rows < (y1 + hole_h)[..., None])  # (B, N, H)
        in_cols = (cols >= x1[..., None]) & (cols < (x1 + hole_w)[..., None])  # (B, N, W)
        mask = (in_rows[..., :, None] & in_cols[..., None, :]).any(1)  # (B, H, W)
        return torch.stack([torch.where(mask, value, images[:, c]) for c, value in enumerate(self.fill)], 1)


_TRANSFORMS = {'YOLOXHSVRandomAug': BatchedYOLOXHSVRandomAug,
               'PhotometricDistortion': BatchedPhotometricDistortion}
_MEMBERS = {'Blur': BatchedBlur, 'MedianBlur': BatchedMedianBlur, 'CoarseDropout': BatchedCoarseDropout}


def build_batched_photometric(cfg: Mapping[str, Any], image_size: Sequence[int] | None = None
                              ) -> list[BatchedPhotometric]:
    """The batched transforms for one pipeline entry, in the order the per-sample pipeline applies
    (and draws) them: an ``Albumentation`` entry gives one object per member, each with its ``p``.

    Args:
        cfg: a pipeline dict such as ``dict(type='YOLOXHSVRandomAug')``.
        image_size: (w, h) px of the images the entry sees (``TopdownAffine``'s input_size);
            needed by ``CoarseDropout``.

    Raises:
        UnsupportedTransformError: the entry (or an Albumentation member) has no batched version.
    """
    if not isinstance(cfg, Mapping) or 'type' not in cfg:
        raise TypeError(f'a pipeline entry must be a dict with a "type", got {cfg!r}')
    args = {k: v for k, v in cfg.items() if k != 'type'}
    kind = cfg['type']
    if kind in _TRANSFORMS:
        return [_TRANSFORMS[kind](**args)]
    if kind != 'Albumentation':
        raise UnsupportedTransformError(str(kind))
    for member in args.get('transforms', []):
        name = member.get('type') if isinstance(member, Mapping) else None
        if name not in _MEMBERS:
            raise UnsupportedTransformError(str(name), ' (in Albumentation)')
    Albumentation(**args)  # the per-sample checks (keymap, member arguments)
    members = []
    for member in args['transforms']:
        member_args = {k: v for k, v in member.items() if k != 'type'}
        if member['type'] == 'CoarseDropout':
            member_args['image_size'] = image_size
        members.append(_MEMBERS[member['type']](**member_args))
    return members
