"""Dataset wrappers: CombinedDataset (several datasets, one keypoint layout) and RepeatDataset."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from datasets.base import BasePoseDataset, PipelineCfg
from datasets.metainfo import parse_pose_metainfo
from utils.registry import DATASETS

_OVERRIDDEN_META = ('upper_body_ids', 'lower_body_ids', 'flip_pairs', 'dataset_keypoint_weights',
                    'flip_indices')


def _build(cfg: Any, what: str) -> BasePoseDataset:
    if isinstance(cfg, BasePoseDataset):
        return cfg
    return DATASETS.build(cfg, cfg_path=what)


@DATASETS.register_module()
class CombinedDataset(BasePoseDataset):
    """Concatenate datasets that share a keypoint layout after their own pipelines.

    Args:
        metainfo: meta information of the combined layout (``dict(from_file=...)`` or a dict).
        datasets: dataset configs; each runs its own ``pipeline`` first (e.g. a
            ``KeypointConverter`` from AIC's 14 keypoints to COCO's 17).
        pipeline: transforms run after each sample's own pipeline.
        pipeline_stage2: replaces ``pipeline`` after :meth:`switch_to_stage2`.
        sample_ratio_factor: per-dataset length multipliers (resampled evenly, with jitter).

    The combined metainfo's flip indices, body halves and joint weights replace each sample's.
    """

    def __init__(self, metainfo: Mapping[str, Any], datasets: Sequence[Any], pipeline: PipelineCfg = (),
                 pipeline_stage2: PipelineCfg = None, sample_ratio_factor: Sequence[float] | None = None,
                 test_mode: bool = False, max_refetch: int = 1000, skip_bad_images: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(pipeline, pipeline_stage2, test_mode, max_refetch, skip_bad_images)
        self.datasets = [_build(cfg, f'datasets[{i}]') for i, cfg in enumerate(datasets)]
        self._metainfo = parse_pose_metainfo(metainfo)
        self._lens_ori = [len(d) for d in self.datasets]
        self.resample = sample_ratio_factor is not None
        if self.resample:
            if len(sample_ratio_factor) != len(self.datasets) or min(sample_ratio_factor) < 0:
                raise ValueError(f'sample_ratio_factor needs {len(self.datasets)} non-negative values, '
                                 f'got {sample_ratio_factor!r}')
            self._lens = [round(n * f) for n, f in zip(self._lens_ori, sample_ratio_factor)]
        else:
            self._lens = list(self._lens_ori)
        self._starts = np.cumsum([0, *self._lens])

    @property
    def lens(self) -> list[int]:
        """Number of samples taken from each dataset."""
        return list(self._lens)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _subset_index(self, idx: int, rng: np.random.Generator) -> tuple[int, int]:
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f'CombinedDataset index {idx} out of range (length {n})')
        idx %= n
        sub = int(np.searchsorted(self._starts, idx, side='right') - 1)
        local = idx - int(self._starts[sub])
        if self.resample:
            gap = (self._lens_ori[sub] - 1e-4) / self._lens[sub]
            local = round(gap * local + rng.random() * gap - 0.5)
        return sub, local

    def sample_info(self, idx: int, rng: np.random.Generator) -> dict | None:
        """Sample ``idx`` through its own dataset's pipeline (drawing from ``rng``), with the combined
        meta information."""
        sub, local = self._subset_index(idx, rng)
        info = self.datasets[sub].prepare_data(local, rng)
        if info is None:
            return None
        for key in _OVERRIDDEN_META:
            info[key] = self._metainfo[key]
        return info


@DATASETS.register_module()
class RepeatDataset(BasePoseDataset):
    """``dataset`` repeated ``times`` times (its own pipeline runs on each sample)."""

    def __init__(self, dataset: Any, times: int, lazy_init: bool = False) -> None:
        self.dataset = _build(dataset, 'dataset')
        super().__init__((), None, self.dataset.test_mode, self.dataset.max_refetch,
                         self.dataset.skip_bad_images)
        if int(times) < 1:
            raise ValueError(f'RepeatDataset times must be >= 1, got {times}')
        self.times = int(times)
        self._metainfo = self.dataset._metainfo
        self._ori_len = len(self.dataset)

    def __len__(self) -> int:
        return self.times * self._ori_len

    def get_data_info(self, idx: int) -> dict | None:
        return self.dataset.get_data_info(idx % self._ori_len)

    def sample_info(self, idx: int, rng: np.random.Generator) -> dict | None:
        """Sample ``idx`` through the repeated dataset's own pipeline (drawing from ``rng``)."""
        return self.dataset.prepare_data(idx % self._ori_len, rng)

    def switch_to_stage2(self) -> bool:
        return self.dataset.switch_to_stage2()
