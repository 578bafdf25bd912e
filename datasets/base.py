"""BasePoseDataset: pipelines (with a second training stage), per-sample seeding, refetching."""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from copy import deepcopy
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from datasets.transforms import Compose, ImageLoadError
from datasets.transforms.rng import RNG_KEY

logger = logging.getLogger('mmpose_clean.datasets')  # a child of utils.logger's logger: in train.log

PipelineCfg = Sequence[Mapping[str, Any] | Callable] | None


def split_index(idx: Any) -> tuple[int, int | None]:
    """``idx`` or ``(idx, seed)`` (what :class:`~datasets.sampler.DefaultSampler` yields) -> both."""
    if isinstance(idx, (tuple, list)):
        return int(idx[0]), int(idx[1])
    return int(idx), None


class BasePoseDataset(Dataset):
    """Common behaviour of the pose datasets and wrappers.

    Args:
        pipeline: transform configs run on each sample.
        pipeline_stage2: transforms used instead after :meth:`switch_to_stage2` (the trainer switches
            for the last ``stage2_num_epochs`` epochs).
        test_mode: evaluation data; a sample the pipeline drops is an error instead of refetched.
        max_refetch: how many other samples to try when the pipeline drops one (training).
        skip_bad_images: replace samples whose image is missing or undecodable by others (with a
            logged warning) instead of raising :class:`ImageLoadError`.

    ``dataset[i]`` or ``dataset[(i, seed)]``: the sample's augmentations draw from its own generator
    ``results['rng'] = np.random.default_rng(seed)`` (fresh entropy without a seed), so they do not
    depend on the worker that runs them.
    """

    def __init__(self, pipeline: PipelineCfg = (), pipeline_stage2: PipelineCfg = None,
                 test_mode: bool = False, max_refetch: int = 1000, skip_bad_images: bool = False) -> None:
        self.pipeline = Compose(pipeline)
        self._pipeline_stage2 = Compose(pipeline_stage2) if pipeline_stage2 else None
        self.in_stage2 = False
        self.test_mode = test_mode
        self.max_refetch = max_refetch
        self.skip_bad_images = skip_bad_images

    @property
    def metainfo(self) -> dict[str, Any]:
        """A copy of the parsed meta information (see ``datasets.metainfo.parse_pose_metainfo``)."""
        return deepcopy(self._metainfo)

    def switch_to_stage2(self) -> bool:
        """Use ``pipeline_stage2`` from now on; ``True`` if the pipeline changed.

        Loader workers hold their own copy of the dataset: use a new loader after a switch
        (``PoseDataLoader.with_stage2`` does both).
        """
        if self._pipeline_stage2 is None or self.in_stage2:
            return False
        self.pipeline, self.in_stage2 = self._pipeline_stage2, True
        return True

    def skip_bad_image(self, error: ImageLoadError) -> None:
        """Log ``error`` as a skipped sample under ``skip_bad_images=True``; re-raise it otherwise."""
        if not self.skip_bad_images:
            raise error
        logger.warning('%s; skipping it (skip_bad_images=True) and using another sample', error)

    def get_data_info(self, idx: int) -> dict | None:
        """The raw sample ``idx`` (before ``pipeline``), or ``None`` if it is to be skipped."""
        raise NotImplementedError

    def sample_info(self, idx: int, rng: np.random.Generator) -> dict | None:
        """The sample ``idx`` as this dataset's ``pipeline`` receives it: the raw sample with its
        generator ``rng`` under ``results['rng']`` (``None`` if it is to be skipped)."""
        info = self.get_data_info(idx)
        if info is not None:
            info[RNG_KEY] = rng
        return info

    def prepare_data(self, idx: int, rng: np.random.Generator) -> Any:
        """Sample ``idx`` through ``pipeline``, drawing from ``rng`` (``None`` when a transform drops it)."""
        info = self.sample_info(idx, rng)
        return None if info is None else self.pipeline(info)

    def __getitem__(self, idx: Any) -> Any:
        index, seed = split_index(idx)
        return self.fetch(index, np.random.default_rng(seed))

    def fetch(self, index: int, rng: np.random.Generator) -> Any:
        """Sample ``index`` through ``pipeline``, drawing from ``rng`` (``__getitem__``'s work once the
        sample's generator is made); in training, a sample that is dropped or, under
        ``skip_bad_images``, whose image is bad is replaced by another one drawn from ``rng``."""
        for _ in range(self.max_refetch + 1):
            try:
                data = self.prepare_data(index, rng)
            except ImageLoadError as e:
                self.skip_bad_image(e)
                data = None
            else:
                if data is None and self.test_mode:
                    raise RuntimeError(f'{type(self).__name__}: the pipeline dropped test sample '
                                       f'{index}; test data cannot be replaced')
            if data is not None:
                return data
            index = int(rng.integers(len(self)))
        raise RuntimeError(f'{type(self).__name__}: no usable sample found after {self.max_refetch} '
                           'tries; check the images and the pipeline')
