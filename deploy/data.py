"""Real crops for calibration and accuracy checks: a COCO-format annotation file through the config's
val pipeline (ground-truth boxes), batched with ``pose_collate``."""
from __future__ import annotations

import copy
import glob
import os
from typing import Any

import numpy as np

from utils.config import Config


def resolve_annotation(data: str, img_dir: str | None = None, option: str = '--calib-data'
                       ) -> tuple[str, str]:
    """(annotation file, image folder) from a data argument: a COCO json, or a folder holding exactly one.

    Images are looked up under ``img_dir`` (default: the annotation file's folder). ``option`` names the
    command-line option in error messages (``--calib-data``, ``--check-data``, ...).
    """
    if os.path.isdir(data):
        found = sorted(glob.glob(os.path.join(data, '*.json')))
        if len(found) != 1:
            raise FileNotFoundError(f'{option} folder {data!r} must hold exactly one COCO-format '
                                    f'.json annotation file (found {len(found)}); pass the file instead')
        data = found[0]
    if not os.path.isfile(data):
        raise FileNotFoundError(f'{option}: annotation file not found: {data!r}')
    folder = img_dir if img_dir is not None else os.path.dirname(os.path.abspath(data))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'{option}: image folder not found: {folder!r}')
    return data, folder


def annotation_loader(cfg: Config, ann_file: str, img_dir: str, batch_size: int = 32) -> Any:
    """A loader over the GT-box instances of ``ann_file`` with ``cfg``'s val dataset type, metainfo and
    pipeline (uint8 crops in ``batch['inputs']``, their meta in ``batch['meta']``)."""
    from datasets import build_dataloader

    loader_cfg = copy.deepcopy(dict(cfg['val_dataloader']))
    dataset = dict(loader_cfg['dataset'])
    dataset.update(ann_file=os.path.abspath(ann_file), data_root=None, bbox_file=None, test_mode=True,
                   data_prefix=dict(img=os.path.abspath(img_dir)))
    loader_cfg.update(dataset=dataset, batch_size=batch_size, num_workers=0, persistent_workers=False,
                      sampler=dict(type='DefaultSampler', shuffle=False, round_up=False))
    cfg_dir = os.path.dirname(os.path.abspath(cfg.filename)) if getattr(cfg, 'filename', None) else None
    return build_dataloader(loader_cfg, seed=0, distributed=False, cfg_dir=cfg_dir)


def stack_inputs(loader: Any, with_flipped: bool = False) -> np.ndarray:
    """All uint8 crops (N, 3, H, W) of a loader; with ``with_flipped`` their mirror images are appended
    (a cheap way to double a small calibration set)."""
    crops = np.concatenate([batch['inputs'].numpy() for batch in loader])
    if with_flipped:
        crops = np.concatenate([crops, np.ascontiguousarray(crops[..., ::-1])])
    return crops
