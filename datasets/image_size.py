"""The one check that a decoded image has the size its annotation file gives (``width`` / ``height``),
shared by every place that reads a sample's image: ``LoadImage`` (per-sample pipeline) and the device
pipeline's loader side (``datasets/batched/host_sample.py``).

Images resized after they were annotated no longer match their boxes and keypoints: every prediction
lands in the wrong place and AP drops to 0 without a word. By default (``size_mismatch='error'`` on the
dataset) such an image is an error naming the file and both sizes. With ``size_mismatch='rescale'`` the
image is resized back to the annotated size when it is read, so the boxes, keypoints, areas and the
predictions stay in the annotation file's pixels, which is what the metric's ``ann_file`` holds too
(scaling the annotations to the decoded image instead would leave the predictions in other units than
the metric's ground truth). An image whose aspect ratio differs as well is not a resized copy (a
rotated or another picture) and is an error in both modes.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import cv2
import numpy as np

from utils.errors import DataError

SIZE_MISMATCH_MODES = ('error', 'rescale')
INFO_KEY = 'annotated_size'  # the sample dict's key holding an AnnotatedSize


class ImageSizeError(DataError):
    """A decoded image whose size differs from its annotation file's ``width`` / ``height``."""


class AnnotatedSize(NamedTuple):
    """What a sample's annotation file says about its image, and what to do when the image differs."""

    height: int
    width: int
    ann_file: str
    size_mismatch: str  # one of SIZE_MISMATCH_MODES


def check_image_size(info: Mapping[str, Any], hw: tuple[int, int], path: str) -> tuple[int, int] | None:
    """The annotated ``(h, w)`` to resize the image at ``path`` to, or ``None`` to keep it.

    Args:
        info: the sample; ``info['annotated_size']`` (an :class:`AnnotatedSize`) is absent when the
            annotation file gives no size: then nothing is checked.
        hw: the decoded image's (height, width) in pixels.
        path: the image file, for the message.

    Raises:
        ImageSizeError: the sizes differ and ``size_mismatch`` is ``'error'``, or the aspect ratio
            differs too (in both modes).
    """
    ann = info.get(INFO_KEY)
    h, w = int(hw[0]), int(hw[1])
    if ann is None or (h, w) == (ann.height, ann.width):
        return None
    where = (f'image file {path} is {w}x{h} pixels but {ann.ann_file} gives width {ann.width}, '
             f'height {ann.height}')
    if abs(h - w * ann.height / ann.width) > max(1.0, 0.01 * h):
        raise ImageSizeError(f'{where}: another aspect ratio, so not a resized copy of the annotated '
                             'image (a rotated or a different picture?)')
    if ann.size_mismatch != 'rescale':
        raise ImageSizeError(f"{where}: resized after it was annotated? size_mismatch='rescale' on the "
                             'dataset resizes such images to the annotated size')
    return ann.height, ann.width


def _resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    shrink = hw[0] < img.shape[0] and hw[1] < img.shape[1]
    return cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def fit_image_size(info: Mapping[str, Any], img: np.ndarray, path: str) -> np.ndarray:
    """``img`` (h, w[, c]) as the sample needs it (see :func:`check_image_size`): unchanged, or resized to
    the annotated size."""
    hw = check_image_size(info, img.shape[:2], path)
    return img if hw is None else _resize(img, hw)


def fit_image_source(info: Mapping[str, Any], path: str, jpeg: np.ndarray | None, image: np.ndarray | None,
                     hw: tuple[int, int]) -> tuple[np.ndarray | None, np.ndarray | None, tuple[int, int]]:
    """:func:`fit_image_size` for the device pipeline's ``(jpeg bytes, decoded image, (h, w))`` (one of the
    first two is ``None``): a resized image is decoded here and returned as ``(None, image, (h, w))``."""
    target = check_image_size(info, hw, path)
    if target is None:
        return jpeg, image, hw
    if image is None:
        image = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)  # a complete plain JPEG (read_image_source checked)
    return None, _resize(image, target), target
