"""Choose and build the training input pipeline: the device-side batched one or the per-sample one.

``input_pipeline`` is ``'device'``, ``'cpu'`` or ``'auto'`` (the default: ``device`` when training
on CUDA with a recipe the batched pipeline supports, else ``cpu``). A recipe it cannot run is named
in a warning and trained with the per-sample pipeline instead.
"""
from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from typing import Any

import torch

from datasets.batched.buffer_pool import BufferPool
from datasets.batched.device_loader import DeviceBatchLoader
from datasets.batched.host_sample import RawSampleDataset
from datasets.batched.pipeline import DeviceTopdownPipeline
from datasets.batched.raw_batch import collate_raw
from datasets.batched.recipe import BatchedRecipe, UnsupportedRecipeError, dataset_recipes
from datasets.builder import build_dataset
from datasets.loader import PoseDataLoader, build_dataloader

INPUT_PIPELINES = ('auto', 'device', 'cpu')


def choose_input_pipeline(requested: str | None, device: torch.device, dataset_cfg: Mapping[str, Any],
                          logger: logging.Logger, where: str = 'train_dataloader.dataset'
                          ) -> list[BatchedRecipe] | None:
    """The recipes to run on ``device`` for ``input_pipeline=requested``, or ``None`` for the per-sample
    pipeline. An unsupported step is logged as a warning naming it (``device`` and ``auto`` on CUDA)."""
    mode = requested or 'auto'
    if mode not in INPUT_PIPELINES:
        raise ValueError(f'input_pipeline must be one of {", ".join(INPUT_PIPELINES)}, got {mode!r}')
    if mode == 'cpu' or (mode == 'auto' and device.type != 'cuda'):
        return None
    try:
        return dataset_recipes(dataset_cfg, where)
    except UnsupportedRecipeError as err:
        logger.warning('input pipeline: %s; using the per-sample CPU pipeline instead', err)
        return None


def build_train_loader(loader_cfg: Mapping[str, Any], recipes: list[BatchedRecipe] | None,
                       device: torch.device, seed: int | None = None, distributed: bool | None = None,
                       cfg_dir: str | os.PathLike | None = None, cfg_path: str = 'train_dataloader'
                       ) -> PoseDataLoader | DeviceBatchLoader:
    """The training loader: with ``recipes`` (from :func:`choose_input_pipeline`) a
    :class:`DeviceBatchLoader` whose batches are made on ``device`` (it checks its first batch against
    the per-sample pipeline and falls back to it, with a warning, if they differ or the device side
    fails); without, the per-sample loader (``datasets.build_dataloader``). Both yield
    ``pose_collate``-layout batches and follow ``set_epoch`` / ``with_stage2`` alike. On CUDA the raw
    batches are pinned, so that their one upload is asynchronous. ``cfg_path`` names ``loader_cfg``
    in error messages."""
    common = dict(seed=seed, distributed=distributed, cfg_dir=cfg_dir, cfg_path=cfg_path)
    if recipes is None:
        return build_dataloader(loader_cfg, **common)
    dataset = RawSampleDataset(build_dataset(loader_cfg['dataset'], cfg_dir, cfg_path=f'{cfg_path}.dataset'),
                               recipes)
    if device.type == 'cuda':
        loader_cfg = {**loader_cfg, 'pin_memory': True}
    collate = functools.partial(collate_raw, pool=BufferPool())  # DeviceBatchLoader releases the buffers
    loader = build_dataloader(loader_cfg, dataset=dataset, collate_fn=collate, **common)
    return DeviceBatchLoader(loader, DeviceTopdownPipeline(recipes, device, dataset.skip_bad_images))
