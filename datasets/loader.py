"""build_dataloader: a DataLoader with the pose sampler, collate, worker seeding and stage-2 switch."""
from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader

from datasets.builder import build_dataset
from datasets.collate import pose_collate
from datasets.sampler import shared_random_seed
from utils.config import ConfigError
from utils.dist import get_rank, get_world_size
from utils.registry import DATA_SAMPLERS


class _WorkerInit:
    """Seeds a loader worker: one thread for OpenCV and torch, and distinct global generator states per
    (seed, rank, worker); the augmentations draw from per-sample generators seeded by the sampler."""

    def __init__(self, seed: int, rank: int) -> None:
        self.seed, self.rank = seed, rank

    def __call__(self, worker_id: int) -> None:
        cv2.setNumThreads(0)
        torch.set_num_threads(1)
        state = np.random.SeedSequence([self.seed, self.rank, worker_id]).generate_state(2)
        np.random.seed(int(state[0]))
        random.seed(int(state[1]))
        torch.manual_seed(int(state[0]))


class PoseDataLoader(DataLoader):
    """A :class:`~torch.utils.data.DataLoader` whose sampler follows the epoch.

    Call :meth:`set_epoch` before each epoch; :meth:`with_stage2` switches the dataset to its stage-2
    pipeline and returns the loader to use from then on.
    """

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (0-based): order and per-sample augmentation seeds."""
        sampler = self.batch_sampler.sampler if self.batch_sampler is not None else self.sampler
        if hasattr(sampler, 'set_epoch'):
            sampler.set_epoch(epoch)

    def with_stage2(self) -> PoseDataLoader | None:
        """Switch the dataset to its ``pipeline_stage2`` and return a new loader on it, with the same
        sampler and settings (its workers copy the switched dataset; this loader's persistent workers
        end with it); ``None`` when the dataset has no stage 2 or is already in it."""
        if not self.dataset.switch_to_stage2():
            return None
        extra = {}
        if self.num_workers > 0:
            extra = {'persistent_workers': self.persistent_workers, 'prefetch_factor': self.prefetch_factor}
        return PoseDataLoader(self.dataset, batch_sampler=self.batch_sampler, num_workers=self.num_workers,
                              collate_fn=self.collate_fn, pin_memory=self.pin_memory,
                              worker_init_fn=self.worker_init_fn, **extra)


def build_dataloader(cfg: Mapping[str, Any], seed: int | None = None, distributed: bool | None = None,
                     cfg_dir: str | os.PathLike | None = None, dataset: Any = None,
                     cfg_path: str = 'dataloader', collate_fn: Callable[[list], Any] = pose_collate
                     ) -> PoseDataLoader:
    """Build a loader from an MMPose-style ``*_dataloader`` config.

    Args:
        cfg: ``dict(batch_size, num_workers=0, persistent_workers=False, pin_memory=False,
            drop_last=False, prefetch_factor=None, sampler=dict(type='DefaultSampler', shuffle,
            round_up), dataset=...)``.
        seed: seed of the shuffling and of every sample's augmentations (``None``: random, shared
            by all ranks).
        distributed: shard across torch.distributed ranks (default: when it is initialised).
        cfg_dir: folder of the config file, for relative ``metainfo.from_file`` paths.
        dataset: an already built dataset to use instead of ``cfg['dataset']``.
        cfg_path: where ``cfg`` sits in the whole config (e.g. ``'val_dataloader'``), for error messages.
        collate_fn: batches the samples (default ``datasets.collate.pose_collate``).
    """
    cfg = dict(cfg)
    if dataset is None:
        if 'dataset' not in cfg:
            raise ConfigError(f'{cfg_path} has no "dataset"')
        dataset = build_dataset(cfg['dataset'], cfg_dir, cfg_path=f'{cfg_path}.dataset')
    rank, world = (0, 1) if distributed is False else (get_rank(), get_world_size())
    sampler_cfg = dict(cfg.get('sampler') or {'type': 'DefaultSampler', 'shuffle': True})
    sampler_cfg.setdefault('type', 'DefaultSampler')
    sampler_seed = sampler_cfg.pop('seed', None)  # a seed in the sampler config wins
    seed = seed if sampler_seed is None else int(sampler_seed)
    seed = shared_random_seed() if seed is None else int(seed)
    sampler = DATA_SAMPLERS.build(sampler_cfg, cfg_path='sampler', dataset=dataset, seed=seed, rank=rank,
                                  world_size=world)
    batch_size = int(cfg.get('batch_size', 1))
    batch_sampler = BatchSampler(sampler, batch_size, drop_last=bool(cfg.get('drop_last', False)))
    num_workers = int(cfg.get('num_workers', 0))
    extra = {}
    if num_workers > 0:
        extra['persistent_workers'] = bool(cfg.get('persistent_workers', False))
        if cfg.get('prefetch_factor') is not None:
            extra['prefetch_factor'] = int(cfg['prefetch_factor'])
    return PoseDataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers,
                          collate_fn=collate_fn, pin_memory=bool(cfg.get('pin_memory', False)),
                          worker_init_fn=_WorkerInit(seed, rank), **extra)
