"""Photometric augmentations of uint8 image batches, on any device, run only where a sample's coin chose them.

Each class mirrors one per-sample transform of :mod:`datasets.transforms` (``YOLOXHSVRandomAug``,
``PhotometricDistortion``) or one ``Albumentation`` member (``Blur``, ``MedianBlur``,
``CoarseDropout``), takes the same config keyword arguments, and splits it in three:

- ``draw(rng)`` runs on the host (in loader workers) and draws one sample's random parameters with the
  same generator calls, in the same order, as the per-sample transform: a generator in a given state
  yields the same parameters and is left in the same state, so the rest of the sample's pipeline
  draws what it would draw per sample. It returns a dict with fixed keys, dtypes and shapes per
  class, so :func:`stack_params` can stack samples.
- ``group_of(params)`` (host) says what the sample needs: ``None`` when the step leaves it unchanged
  (its coin said no), else a key; samples with the same key are augmented together
  (:func:`plan_groups`, in the worker that collates the batch, so the device never decides).
- ``apply(images, params, key)`` runs on the batch's device on the (n, 3, H, W) uint8 BGR images of
  one group with their stacked (n, ...) ``params``; it returns a new (n, 3, H, W) uint8 batch, using
  tensor ops only (no loop over samples, no host read-back, so CUDA never syncs).

So an optional step costs nothing for the samples that skip it: Blur and MedianBlur (p = 0.1 in the
recipes) run on a tenth of the batch, grouped by kernel size, CoarseDropout on its chosen samples,
PhotometricDistortion's HSV round trip only where it was drawn.

Agreement with the per-sample OpenCV path (tests/test_batched_photometric.py): the HSV conversions
as documented in :mod:`datasets.batched.hsv`; brightness, contrast, saturation, hue shift, channel
swap, the HSV lookup table, Blur, MedianBlur and CoarseDropout are bit-exact.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from datasets.batched.hsv import bgr_to_hsv, hsv_to_bgr
from datasets.transforms.albumentation import Albumentation, Blur, CoarseDropout, MedianBlur
from datasets.transforms.photometric import PhotometricDistortion, YOLOXHSVRandomAug
from utils.registry import BATCHED_PHOTOMETRIC

Params = dict[str, Any]  # one sample's parameters: numpy scalars / arrays of fixed dtype and shape


class UnsupportedTransformError(ValueError):
    """A transform type with no batched implementation; ``transform_type`` holds its name."""

    def __init__(self, transform_type: str, detail: str = '') -> None:
        self.transform_type = transform_type
        supported = [name.replace('.', '(') + ')' if '.' in name else name
                     for name in BATCHED_PHOTOMETRIC.names]  # Albumentation.Blur -> Albumentation(Blur)
        super().__init__(f'transform {transform_type!r} has no batched implementation{detail} '
                         f'(batched: {", ".join(supported)})')


def stack_params(samples: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Stack the ``draw`` dicts of n samples (one transform) into (n, ...) numpy arrays.

    Dtypes are kept (float params are float32, integer ones int64, flags bool).
    """
    if not samples:
        raise ValueError('stack_params needs at least one sample')
    keys = list(samples[0])
    for i, sample in enumerate(samples):
        if set(sample) != set(keys):
            raise ValueError(f'sample {i} has parameters {sorted(sample)}, sample 0 has {sorted(keys)}')
    return {k: np.array([s[k] for s in samples], dtype=np.asarray(samples[0][k]).dtype) for k in keys}


class Group(NamedTuple):
    """Samples of a batch that one photometric step augments together: ``key`` (of ``group_of``),
    ``index`` (n,) int64 their positions in the batch (``None``: all samples, in order) and
    ``params`` their stacked parameters (n, ...)."""

    key: Hashable
    index: Any
    params: dict[str, Any]


def plan_groups(keys: Sequence[Hashable | None], draws: Sequence[Params]) -> list[Group]:
    """The groups of one step for a batch whose samples drew ``draws`` and need ``keys`` (one per
    sample, from ``group_of``; ``None``: left unchanged), in order of first appearance; numpy arrays."""
    positions: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        if key is not None:
            positions.setdefault(key, []).append(i)
    groups = []
    for key, members in positions.items():
        every = len(members) == len(keys)  # then positions are 0..B-1 in order
        groups.append(Group(key, None if every else np.asarray(members, dtype=np.int64),
                            stack_params([draws[i] for i in members])))
    return groups


def apply_groups(step: BatchedPhotometric, images: torch.Tensor, groups: Sequence[Group]) -> torch.Tensor:
    """``step`` on each group of ``images`` (B, 3, H, W) uint8 (``index`` and ``params`` tensors on
    their device); other samples pass unchanged. Returns the batch (updated in place when no group
    covers every sample)."""
    for group in groups:
        if group.index is None:
            images = step.apply(images, group.params, group.key)
        else:
            images.index_copy_(0, group.index, step.apply(images.index_select(0, group.index),
                                                          group.params, group.key))
    return images


def _applied(rng: np.random.Generator, p: float) -> bool:
    """An Albumentation member's coin, drawn exactly as ``Albumentation.transform`` draws it."""
    return p >= 1.0 or rng.random() < p


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) ``values`` shaped to broadcast against ``like`` (B, ...)."""
    return values.view(-1, *[1] * (like.dim() - 1))


def _convert(images: torch.Tensor, alpha: torch.Tensor | None, beta: torch.Tensor | None) -> torch.Tensor:
    """uint8 ``clip(images * alpha + beta, 0, 255)`` in float32, truncated (per-sample ``_convert``);
    ``None`` for the identity factor / offset."""
    out = images.to(torch.float32)
    if alpha is not None:
        out = out * _per_sample(alpha, images)
    if beta is not None:
        out = out + _per_sample(beta, images)
    return out.clamp_(0, 255).to(torch.uint8)


class BatchedPhotometric:
    """The batched-transform interface: ``draw`` one sample's parameters, ``group_of`` says whether and
    how it is augmented, ``apply`` augments a group of samples."""

    def draw(self, rng: np.random.Generator) -> Params:
        """One sample's random parameters, drawn from ``rng`` as the per-sample transform draws them."""
        raise NotImplementedError

    def group_of(self, params: Params) -> Hashable | None:
        """The group key of a sample with ``params``; ``None`` when the step leaves it unchanged."""
        return True

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor], key: Hashable) -> torch.Tensor:
        """(n, 3, H, W) uint8 BGR ``images`` of group ``key`` with stacked ``params`` -> a new batch."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.reference!r})'


@BATCHED_PHOTOMETRIC.register_module('YOLOXHSVRandomAug')
class BatchedYOLOXHSVRandomAug(BatchedPhotometric):
    """:class:`~datasets.transforms.photometric.YOLOXHSVRandomAug` (same keyword arguments): every
    sample goes through the HSV round trip, as per sample. Params: ``gains`` (3,) int16, the (hue,
    saturation, value) offsets."""

    def __init__(self, **kwargs: Any) -> None:
        self.reference = YOLOXHSVRandomAug(**kwargs)

    def draw(self, rng: np.random.Generator) -> Params:
        return {'gains': self.reference.get_gains(rng)}

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor], key: Hashable) -> torch.Tensor:
        lut = torch.arange(256, device=images.device) + params['gains'].long()[:, :, None]  # (n, 3, 256)
        lut = torch.cat([lut[:, :1] % 180, lut[:, 1:].clamp(0, 255)], 1)  # hue wraps, the rest clips
        hsv = bgr_to_hsv(images)
        hsv = torch.gather(lut, 2, hsv.flatten(2).long()).view_as(hsv).to(torch.uint8)
        return hsv_to_bgr(hsv)


@BATCHED_PHOTOMETRIC.register_module('PhotometricDistortion')
class BatchedPhotometricDistortion(BatchedPhotometric):
    """:class:`~datasets.transforms.photometric.PhotometricDistortion` (same keyword arguments).

    Params (steps that are off hold their identity value): ``beta`` float32 brightness offset,
    ``alpha`` float32 contrast factor (applied before and after the HSV step, as MMPose 1.3.2),
    ``hsv`` bool whether the HSV round trip runs, ``saturation`` float32 factor, ``hue`` int64
    offset (half degrees, wraps modulo 256), ``order`` (3,) int64 output channel order.
    The group key is ``hsv``: the round trip runs only for the samples that drew it.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.reference = PhotometricDistortion(**kwargs)

    def draw(self, rng: np.random.Generator) -> Params:
        params = self.reference.draw(rng)
        return {
            'beta': np.float32(params['beta']),
            'alpha': np.float32(params['alpha']),
            'hsv': np.bool_(params['hsv']),
            'saturation': np.float32(params['saturation']),
            'hue': np.int64(params['hue']),
            'order': params['order'] if params['order'] is not None else np.arange(3),
        }

    def group_of(self, params: Params) -> Hashable | None:
        return bool(params['hsv'])

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor], key: Hashable) -> torch.Tensor:
        img = _convert(_convert(images, None, params['beta']), params['alpha'], None)
        if key:
            hue, saturation, value = bgr_to_hsv(img).unbind(1)
            saturation = _convert(saturation, params['saturation'], None)
            hue = ((hue.long() + _per_sample(params['hue'], hue)) % 256).to(torch.uint8)
            img = hsv_to_bgr(torch.stack([hue, saturation, value], 1))
        img = _convert(img, params['alpha'], None)
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


def _padded(images: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
    """(n, C, H + 2 pad, W + 2 pad): ``images`` with ``pad`` px of OpenCV border ``mode`` around."""
    rows = _padding_index(images.shape[2], pad, pad, mode, images.device)
    cols = _padding_index(images.shape[3], pad, pad, mode, images.device)
    return images.index_select(2, rows).index_select(3, cols)


def box_blur(images: torch.Tensor, ksize: int) -> torch.Tensor:
    """``cv2.blur(img, (k, k))`` (odd k, reflect-101 border) of every image: integer box sums from an
    integral image, rounded to nearest as OpenCV's fixed-point mean."""
    table = _padded(images, ksize // 2, 'reflect101').to(torch.int32).cumsum(2).cumsum(3)
    table = torch.nn.functional.pad(table, (1, 0, 1, 0))  # (n, C, H + k, W + k)
    k = ksize
    sums = table[:, :, k:, k:] - table[:, :, :-k, k:] - table[:, :, k:, :-k] + table[:, :, :-k, :-k]
    return torch.div(2 * sums + k * k, 2 * k * k, rounding_mode='floor').to(torch.uint8)


def median_blur(images: torch.Tensor, ksize: int) -> torch.Tensor:
    """``cv2.medianBlur(img, k)`` (odd k, replicated border) of every image: the median of the k^2
    shifted copies."""
    height, width = images.shape[2:]
    padded = _padded(images, ksize // 2, 'replicate')
    windows = torch.stack([padded[:, :, dy:dy + height, dx:dx + width]
                           for dy in range(ksize) for dx in range(ksize)], -1)  # (n, C, H, W, k^2)
    return windows.median(-1).values


@BATCHED_PHOTOMETRIC.register_module('Albumentation.Blur')
class BatchedBlur(BatchedPhotometric):
    """The ``Albumentation`` member :class:`~datasets.transforms.albumentation.Blur` (same keyword
    arguments, including ``p``). Params: ``ksize`` int64, the kernel size (px); 1 when not applied.
    The group key is the kernel size (``None`` when not applied)."""

    reference_type: type = Blur

    def __init__(self, **kwargs: Any) -> None:
        self.reference = self.reference_type(**kwargs)
        if self.reference.limits[0] % 2 == 0:  # OpenCV rounds even-size box means its own way
            raise UnsupportedTransformError(self.reference_type.__name__,
                                            f' for even kernel sizes (blur_limit {self.reference.limits})')

    def draw(self, rng: np.random.Generator) -> Params:
        return {'ksize': np.int64(self.reference.kernel_size(rng) if _applied(rng, self.reference.p) else 1)}

    def group_of(self, params: Params) -> Hashable | None:
        ksize = int(params['ksize'])
        return ksize if ksize > 1 else None

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor], key: Hashable) -> torch.Tensor:
        return box_blur(images, int(key))


@BATCHED_PHOTOMETRIC.register_module('Albumentation.MedianBlur')
class BatchedMedianBlur(BatchedBlur):
    """The ``Albumentation`` member :class:`~datasets.transforms.albumentation.MedianBlur` (same keyword
    arguments, including ``p``). Params: ``ksize`` int64, the odd kernel size (px); 1 when not applied.
    The group key is the kernel size (``None`` when not applied)."""

    reference_type = MedianBlur

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor], key: Hashable) -> torch.Tensor:
        return median_blur(images, int(key))


@BATCHED_PHOTOMETRIC.register_module('Albumentation.CoarseDropout')
class BatchedCoarseDropout(BatchedPhotometric):
    """The ``Albumentation`` member :class:`~datasets.transforms.albumentation.CoarseDropout` (same
    keyword arguments, including ``p``), for images of ``image_size`` = (w, h) px (the size
    ``TopdownAffine`` crops to), which the hole positions are drawn for.

    Params: ``holes`` (max_holes, 4) int64 rows (y1, x1, height, width) in px; rows of unused
    holes, and all rows when not applied, have zero size. The group key is ``True`` when a hole
    has an area (``None`` otherwise).
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
        holes = ref.holes(rng, height, width) if _applied(rng, ref.p) else []
        holes += [(0, 0, 0, 0)] * (ref.max_holes - len(holes))
        return {'holes': np.array(holes, dtype=np.int64)}

    def group_of(self, params: Params) -> Hashable | None:
        return True if any(h > 0 and w > 0 for _, _, h, w in params['holes'].tolist()) else None

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor], key: Hashable) -> torch.Tensor:
        height, width = images.shape[2:]
        if (width, height) != self.image_size:
            raise ValueError(f'CoarseDropout was built for {self.image_size} (w, h) images, '
                             f'got {width}x{height}')
        y1, x1, hole_h, hole_w = params['holes'].long().unbind(-1)  # (n, N) each
        rows = torch.arange(height, device=images.device)
        cols = torch.arange(width, device=images.device)
        in_rows = (rows >= y1[..., None]) & (rows < (y1 + hole_h)[..., None])  # (n, N, H)
        in_cols = (cols >= x1[..., None]) & (cols < (x1 + hole_w)[..., None])  # (n, N, W)
        mask = (in_rows[..., :, None] & in_cols[..., None, :]).any(1)  # (n, H, W)
        return torch.stack([torch.where(mask, value, images[:, c]) for c, value in enumerate(self.fill)], 1)


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
    if kind in BATCHED_PHOTOMETRIC:
        return [BATCHED_PHOTOMETRIC.build(cfg)]
    if kind != 'Albumentation':
        raise UnsupportedTransformError(str(kind))
    for member in args.get('transforms', []):
        name = member.get('type') if isinstance(member, Mapping) else None
        if f'Albumentation.{name}' not in BATCHED_PHOTOMETRIC:
            raise UnsupportedTransformError(str(name), ' (in Albumentation)')
    Albumentation(**args)  # the per-sample checks (keymap, member arguments)
    members = []
    for member in args['transforms']:
        member_args = {k: v for k, v in member.items() if k != 'type'}
        if member['type'] == 'CoarseDropout':
            member_args['image_size'] = image_size
        members.append(BATCHED_PHOTOMETRIC.build({**member_args, 'type': f"Albumentation.{member['type']}"}))
    return members
