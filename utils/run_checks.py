"""Checks a training run makes before any work: settings that cannot work and work dirs it must not
overwrite. Each failure is one line naming the config key or the command-line flag to use."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from utils.errors import ArgumentError, SettingsError


def refuse_overwrite(work_dir: Path, resume_from: str | None, overwrite: bool) -> None:
    """A new (not resumed) run must not replace the checkpoints of an earlier run in ``work_dir``.

    Raises:
        ArgumentError: ``work_dir`` holds ``*.pth`` files, ``resume_from`` is None and not ``overwrite``;
            the message names ``--resume``, ``--overwrite`` and ``--work-dir``.
    """
    if resume_from is not None or overwrite or not work_dir.is_dir():
        return
    found = sorted(p.name for p in work_dir.glob('*.pth'))
    if found:
        raise ArgumentError(f'work dir {work_dir} already holds {", ".join(found)} of an earlier run: pass '
                            '--resume to continue it, --overwrite to start again and replace them, or '
                            '--work-dir DIR for a new folder')


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingsError(f'{key} = {value!r}: must be a whole number of at least 1')
    return value


def check_training_settings(cfg: Mapping[str, Any]) -> None:
    """Settings of a training config that cannot work, found from the config alone.

    Raises:
        SettingsError: naming the key: ``train_cfg.max_epochs`` < 1, ``train_cfg.val_interval`` < 1 or past
            ``max_epochs``, ``stage2_num_epochs`` past ``max_epochs``, a ``batch_size`` < 1.
    """
    train_cfg = cfg.get('train_cfg') or {}
    if 'max_epochs' not in train_cfg:
        raise SettingsError('train_cfg.max_epochs is not set: how many epochs to train')
    max_epochs = _positive_int(train_cfg['max_epochs'], 'train_cfg.max_epochs')
    val_interval = _positive_int(train_cfg.get('val_interval', 1), 'train_cfg.val_interval')
    if val_interval > max_epochs:
        raise SettingsError(f'train_cfg.val_interval = {val_interval} is past train_cfg.max_epochs = '
                            f'{max_epochs}: validation would only run after the last epoch; lower it')
    stage2 = cfg.get('stage2_num_epochs') or 0
    if not isinstance(stage2, int) or not 0 <= stage2 <= max_epochs:
        raise SettingsError(f'stage2_num_epochs = {stage2!r}: must be a whole number from 0 to '
                            f'train_cfg.max_epochs = {max_epochs}')
    for loader in ('train_dataloader', 'val_dataloader'):
        _positive_int((cfg.get(loader) or {}).get('batch_size', 1), f'{loader}.batch_size')


def check_data_sizes(cfg: Mapping[str, Any], train_samples: int, train_iters: int, val_samples: int,
                     world_size: int = 1) -> None:
    """Datasets too small for the settings, found once they are built (before the model trains).

    Args:
        train_samples, val_samples: samples of the training / validation datasets after filtering.
        train_iters: iterations of one training epoch on this process.
        world_size: number of processes sharing the data.

    Raises:
        SettingsError: an empty dataset, or no iteration per epoch (a batch larger than the data with
            ``drop_last``), naming the keys to change.
    """
    for key, count in (('train_dataloader.dataset', train_samples), ('val_dataloader.dataset', val_samples)):
        if count == 0:
            raise SettingsError(f'{key} has no samples after filtering (check its ann_file, indices, '
                                'sample_interval and filter_cfg)')
    if train_iters == 0:
        batch = cfg['train_dataloader'].get('batch_size', 1)
        per_process = -(-train_samples // world_size)
        raise SettingsError(f'train_dataloader.batch_size = {batch} is larger than the {per_process} samples '
                            f'per process of train_dataloader.dataset, and train_dataloader.drop_last = True '
                            'drops the only, incomplete batch: lower the batch size or set drop_last=False')
