"""Loader side of the device pipeline: read a sample's annotations and its JPEG's header (the bytes go
straight from the file into the batch, in ``collate_raw``) and draw all its random augmentation
parameters, without decoding or touching pixels.

The draws reuse the per-sample transforms' own methods, in the per-sample pipeline's order, from the
same seeded per-sample generator, so for a given sample seed the geometric parameters are exactly
those the per-sample pipeline would use.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from datasets.base import BasePoseDataset, split_index
from datasets.batched.geometry import FLIP_CODES
from datasets.batched.recipe import BatchedRecipe
from datasets.image_io import (
    TAIL_BYTES,
    ImageFile,
    ImageLoadError,
    check_complete,
    decode_image,
    read_file_bytes,
    read_into,
)
from datasets.image_size import check_image_size, fit_image_source
from datasets.jpeg_header import HEADER_BYTES, jpeg_frame
from datasets.transforms.formatting import instance_meta
from datasets.transforms.rng import sample_generators
from datasets.wrappers import RepeatDataset

_NO_SHIFT = np.zeros(2, dtype=np.float32)
_FIRST_READ = 1 << 14  # bytes read first for a JPEG's header (more, up to HEADER_BYTES, when it is longer)


class JpegFile(NamedTuple):
    """A JPEG file the device decoder reads: :func:`~datasets.batched.raw_batch.collate_raw` reads its
    bytes straight into the batch's buffer (no copy of them per sample, and none of their memory to
    allocate: in a loader worker, fresh per-sample allocations of ~150 kB each cost page faults)."""

    path: str
    size: int  # bytes, when the header was read

    @property
    def nbytes(self) -> int:
        return self.size

    def read_into(self, out: np.ndarray) -> None:
        """Read the whole file into ``out`` (uint8, :attr:`size` bytes).

        Raises:
            ImageLoadError: naming the file, when it cannot be read or its size changed since its
                header was read.
        """
        with ImageFile(self.path) as fd:
            size, rest = read_into(fd, out)
        if size != self.size or rest:
            raise ImageLoadError(f'image file {self.path} changed while it was read (it had {self.size} '
                                 'bytes); do not modify the images while training')


def read_image_source(path: str) -> tuple[JpegFile | None, np.ndarray | None, tuple[int, int]]:
    """``(JpegFile, None, (h, w))`` for a JPEG the device decoder reads as OpenCV does (baseline or
    progressive, 8-bit, 1 or 3 components, no EXIF rotation: ``JpegFrame.device_decodable``), else
    ``(None, BGR image (h, w, 3), (h, w))`` decoded here with OpenCV, as ``LoadImage`` does. Of a JPEG
    only the header and the last kB are read here; ``collate_raw`` reads the rest.

    Raises:
        ImageLoadError: naming the file when it is missing, truncated or cannot be decoded (the
            checks of ``LoadImage``).
    """
    with ImageFile(path) as fd:
        size = os.fstat(fd).st_size
        head = os.read(fd, min(size, _FIRST_READ))
        frame = jpeg_frame(head)
        longer = head[:2] == b'\xff\xd8' and len(head) < min(size, HEADER_BYTES)
        if longer and (frame is None or frame.scan is None):  # a long header (an EXIF thumbnail): read on
            frame = jpeg_frame(head + os.read(fd, min(size, HEADER_BYTES) - len(head)))
        if frame is not None and frame.device_decodable:
            tail_start = max(0, size - TAIL_BYTES)
            os.lseek(fd, tail_start, os.SEEK_SET)
            end = os.read(fd, size - tail_start).rfind(b'\xff\xd9')
            if frame.scan is None or end < 0 or tail_start + end < frame.scan:  # not plainly complete
                check_complete(read_file_bytes(path), path, frame.scan)  # names the file, or finds the end
            return JpegFile(path, size), None, (frame.height, frame.width)
    img = decode_image(read_file_bytes(path), path)  # other formats, CMYK, EXIF-rotated
    return None, img, img.shape[:2]


def draw_params(recipe: BatchedRecipe, info: dict[str, Any], visible: np.ndarray,
                rng: np.random.Generator) -> dict[str, Any]:
    """The random parameters of one sample: ``flip`` (code of ``geometry.FLIP_CODES``), ``half_body``
    (K,) bool joints framing the box (all False: box kept), ``shift`` (2,) in box sizes, ``scale``
    factor, ``rotation`` degrees, ``photometric`` (one ``draw`` dict per augmentation) and
    ``photometric_keys`` (each augmentation's ``group_of``: ``None`` where its coin said no)."""
    direction = recipe.flip.draw_direction(rng) if recipe.flip is not None else None
    half_body = np.zeros(visible.shape[0], dtype=bool)
    if recipe.half_body is not None:
        flipped = visible if direction in (None, 'diagonal') else visible[np.asarray(info['flip_indices'])]
        ids = recipe.half_body.select(flipped, info['upper_body_ids'], info['lower_body_ids'], rng)
        if ids:
            half_body[ids] = True
    shift, scale, rotation = _NO_SHIFT, np.float32(1), np.float32(0)
    if recipe.bbox_transform is not None:
        offset, factor, rotate = recipe.bbox_transform.get_params(1, rng)
        shift, scale, rotation = offset[0], factor[0, 0], rotate[0]
    photometric = [op.draw(rng) for op in recipe.photometric]
    return {'flip': FLIP_CODES[direction], 'half_body': half_body, 'shift': shift, 'scale': scale,
            'rotation': rotation, 'photometric': photometric,
            'photometric_keys': [op.group_of(p) for op, p in zip(recipe.photometric, photometric)]}


def raw_sample(info: dict[str, Any], recipe: BatchedRecipe, rng: np.random.Generator,
               stage: int) -> dict[str, Any]:
    """One sample of the raw batch: the image source (:func:`read_image_source`), its annotations
    (first instance; ``keypoints`` (K, 2) image px, ``keypoints_visible`` (K,)), the meta values the
    transforms leave unchanged (``formatting.instance_meta``, as the per-sample pipeline packs them)
    and the drawn parameters (:func:`draw_params`)."""
    path = str(info['img_path'])
    jpeg, image, hw = read_image_source(path)
    if jpeg is None or check_image_size(info, hw, path) is not None:  # datasets/image_size.py
        if image is None:  # a JPEG to resize: decoded here
            image = decode_image(read_file_bytes(path), path)
        jpeg, image, hw = fit_image_source(info, path, None, image, image.shape[:2])
    visible = np.asarray(info['keypoints_visible'], dtype=np.float32)[0]
    if visible.ndim == 2:  # (K, 2) (visibility, weight) from KeypointConverter
        visible = visible[:, 0]
    return {
        'jpeg': jpeg, 'image': image, 'img_hw': hw, 'stage': stage, **instance_meta(info),
        'bbox': np.asarray(info['bbox'], dtype=np.float32).reshape(-1, 4)[0],
        'keypoints': np.asarray(info['keypoints'], dtype=np.float32)[0, :, :2],
        'keypoints_visible': visible,
        'dataset_keypoint_weights': np.asarray(info.get('dataset_keypoint_weights', 1.0), dtype=np.float32),
        **draw_params(recipe, info, visible, rng),
    }


class RawSampleDataset(BasePoseDataset):
    """Wrap a pose dataset so that ``ds[(i, seed)]`` gives :func:`raw_sample` dicts instead of
    running its pipeline; refetching and ``skip_bad_images`` behave as in the wrapped dataset.

    Args:
        dataset: a built dataset (``CocoDataset``, ``CombinedDataset``, ``RepeatDataset``, ...) whose
            pipelines were read into ``recipes``.
        recipes: ``[stage 1]`` or ``[stage 1, stage 2]`` (``recipe.dataset_recipes``).
    """

    def __init__(self, dataset: BasePoseDataset, recipes: Sequence[BatchedRecipe]) -> None:
        super().__init__((), None, dataset.test_mode, dataset.max_refetch, dataset.skip_bad_images)
        self.dataset = dataset
        self.recipes = list(recipes)
        self.stage = 0
        self._metainfo = dataset._metainfo

    def __len__(self) -> int:
        return len(self.dataset)

    def _follow(self, changed: bool) -> bool:
        if changed:
            self.stage = min(self.stage + 1, len(self.recipes) - 1)
        return changed

    def switch_to_stage2(self) -> bool:
        return self._follow(bool(self.dataset.switch_to_stage2()))

    def get_data_info(self, idx: int) -> dict | None:
        return self.dataset.get_data_info(idx)

    def __getitem__(self, idx: Any) -> dict[str, Any]:
        """The raw sample of ``idx`` or ``(idx, seed)``, with ``key`` = (idx, seed or -1): the wrapped
        dataset gives the same sample, through its own pipeline, for the same key."""
        return self.__getitems__([idx])[0]

    def __getitems__(self, indices: Sequence[Any]) -> list[dict[str, Any]]:
        """``[self[idx] for idx in indices]``, the samples' generators made together
        (``rng.sample_generators``); torch's DataLoader fetches a batch through it."""
        keys = [split_index(idx) for idx in indices]
        samples = []
        for (index, seed), rng in zip(keys, sample_generators([seed for _, seed in keys])):
            sample = self.fetch(index, rng)
            sample['key'] = (index, -1 if seed is None else seed)
            samples.append(sample)
        return samples

    def sample_info(self, idx: int, rng: np.random.Generator) -> dict | None:
        """The :func:`raw_sample` of sample ``idx``, its parameters drawn from ``rng`` (the wrapped
        dataset's sample as its own pipeline would receive it, e.g. after a sub-dataset's converter)."""
        dataset = self.dataset
        while isinstance(dataset, RepeatDataset):  # its pipeline is the repeated dataset's (recipe.py)
            dataset, idx = dataset.dataset, idx % len(dataset.dataset)
        info = dataset.sample_info(idx, rng)
        return None if info is None else raw_sample(info, self.recipes[self.stage], rng, self.stage)
