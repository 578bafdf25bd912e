"""Test-time image preparation of MMDetection 3.3.0 detectors: keep-ratio resize, then pad.

MMDetection configs describe it as a pipeline, e.g. ``[LoadImageFromFile, Resize(scale=(640, 640),
keep_ratio=True), Pad(size=(640, 640), pad_val=dict(img=(114, 114, 114))), LoadAnnotations,
PackDetInputs]``; :class:`DetTestTransform` reads the Resize and Pad steps of such a list.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

_IGNORED = {'LoadImageFromFile', 'LoadImageFromNDArray', 'LoadAnnotations', 'PackDetInputs',
            'mmdet.LoadImageFromFile', 'mmdet.LoadImageFromNDArray', 'mmdet.LoadAnnotations',
            'mmdet.PackDetInputs'}


def rescale_size(w: int, h: int, scale: Sequence[int]) -> tuple[int, int]:
    """Size (w, h) of an image rescaled with its aspect ratio kept to fit ``scale`` (long, short edges)."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(w * factor + 0.5), int(h * factor + 0.5)


class DetTestTransform:
    """Resize (keep ratio or exact, bilinear) and pad bottom/right to a fixed size or a divisor.

    Args:
        scale: (w, h) target of the resize; None skips resizing.
        keep_ratio: rescale to fit ``scale`` keeping the aspect ratio (as mmcv.imrescale).
        pad_size: (w, h) to pad to; pad_size_divisor: pad each side up to a multiple instead.
        pad_val: grey level of the padding.
    """

    def __init__(self, scale: Sequence[int] | None = (640, 640), keep_ratio: bool = True,
                 pad_size: Sequence[int] | None = (640, 640), pad_size_divisor: int | None = None,
                 pad_val: float = 114) -> None:
        self.scale = tuple(scale) if scale is not None else None
        self.keep_ratio = keep_ratio
        self.pad_size = tuple(pad_size) if pad_size is not None else None
        self.pad_size_divisor = pad_size_divisor
        self.pad_val = pad_val

    @classmethod
    def from_pipeline(cls, pipeline: Sequence[Mapping]) -> DetTestTransform:
        """Build from an MMDetection-style test pipeline list (Resize and Pad are read, loaders skipped)."""
        args: dict = {'scale': None, 'pad_size': None}
        for step in pipeline:
            kind = step.get('type')
            if kind in _IGNORED:
                continue
            if kind in ('Resize', 'mmdet.Resize'):
                args['scale'] = step['scale']
                args['keep_ratio'] = step.get('keep_ratio', False)
            elif kind in ('Pad', 'mmdet.Pad'):
                args['pad_size'] = step.get('size')
                args['pad_size_divisor'] = step.get('size_divisor')
                pad_val = step.get('pad_val', 0)
                if isinstance(pad_val, Mapping):
                    pad_val = pad_val.get('img', 0)
                args['pad_val'] = pad_val[0] if isinstance(pad_val, (list, tuple)) else pad_val
            else:
                raise ValueError(f'detector test pipeline step {kind!r} is not supported; expected '
                                 f'Resize, Pad or one of {sorted(_IGNORED)}')
        return cls(**args)

    def __call__(self, img: np.ndarray) -> tuple[np.ndarray, dict]:
        """Prepare one BGR uint8 image (H, W, 3).

        Returns:
            the network input (H', W', 3) uint8 and its meta: ``ori_shape`` (h, w), ``img_shape``
            (h', w') of the padded input, ``scale_factor`` (w_scale, h_scale) of the resize.
        """
        h, w = img.shape[:2]
        out, scale_factor = img, (1.0, 1.0)
        if self.scale is not None:
            new_w, new_h = rescale_size(w, h, self.scale) if self.keep_ratio else self.scale
            out = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
            scale_factor = (new_w / w, new_h / h)
        rh, rw = out.shape[:2]
        if self.pad_size is not None:
            pw, ph = self.pad_size
        elif self.pad_size_divisor:
            d = self.pad_size_divisor
            pw, ph = -(-rw // d) * d, -(-rh // d) * d
        else:
            pw, ph = rw, rh
        if (pw, ph) != (rw, rh):
            if pw < rw or ph < rh:
                raise ValueError(f'image of {rw}x{rh} px after resize is larger than the pad size {pw}x{ph}')
            out = cv2.copyMakeBorder(out, 0, ph - rh, 0, pw - rw, cv2.BORDER_CONSTANT,
                                     value=(self.pad_val,) * 3)
        return out, {'ori_shape': (h, w), 'img_shape': out.shape[:2], 'scale_factor': scale_factor}
