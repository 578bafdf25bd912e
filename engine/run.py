"""Setting up a training run from its config, and what it writes to resume: the checks made before any
work (settings that cannot work, missing data paths, work dirs not to overwrite, datasets too small), AMP,
cuDNN and pinned loader memory, the model to train (weights, QAT, channels_last, SyncBN, DDP; the EMA is
``optim.build_ema``), and the resumable state of ``last.pth`` / ``best.pth`` with its restore. Each check
failure is one line naming the config key or the command-line flag to use."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine.step import LossModel
from models import build_pose_estimator
from models.checkpoints import load_checkpoint, resolve_checkpoint
from models.loading import prepare_for_training
from utils.config import Config
from utils.errors import ArgumentError, SettingsError

logger = logging.getLogger('mmpose_clean.engine')


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


def dataset_paths(node: Any) -> list[Path]:
    """Files and folders a dataset config (nested datasets included) reads."""
    paths: list[Path] = []
    if isinstance(node, dict):
        if 'ann_file' in node and 'type' in node:
            root = Path(node.get('data_root') or '')
            paths.append(root / node['ann_file'])
            img = (node.get('data_prefix') or {}).get('img')
            if img:
                paths.append(root / img)
            if node.get('bbox_file'):
                paths.append(Path(node['bbox_file']))
        for key in ('dataset', 'datasets'):
            if key in node:
                paths += dataset_paths(node[key])
    elif isinstance(node, (list, tuple)):
        for item in node:
            paths += dataset_paths(item)
    return paths


def check_data_paths(cfg: Config) -> None:
    """Fail before any work when a dataset or annotation path of the config does not exist."""
    for where in ('train_dataloader', 'val_dataloader'):
        for path in dataset_paths(cfg[where]['dataset']):
            if not path.exists():
                raise FileNotFoundError(f'{where}: dataset path {str(path)!r} does not exist (set data_root '
                                        '/ ann_file / data_prefix; see README "Data preparation")')
    ann = cfg.get('val_evaluator', {}).get('ann_file')
    if ann and not Path(ann).exists():
        raise FileNotFoundError(f'val_evaluator.ann_file {ann!r} does not exist')


def enable_amp(cfg: Config, device: torch.device) -> None:
    """Train with autocast: ``AmpOptimWrapper``, bfloat16 where the device supports it (else float16 with
    loss scaling) unless the config names a dtype."""
    cfg.optim_wrapper['type'] = 'AmpOptimWrapper'
    bf16_ok = device.type != 'cuda' or torch.cuda.is_bf16_supported()
    cfg.optim_wrapper.setdefault('dtype', 'bfloat16' if bf16_ok else 'float16')


def pin_loader_memory(cfg: Config, device: torch.device) -> None:
    """On CUDA, page-locked batches for the train and val loaders (unless the config says otherwise), so
    that the ``non_blocking`` uint8 copies overlap the step."""
    if device.type == 'cuda':
        cfg.train_dataloader.setdefault('pin_memory', True)
        cfg.val_dataloader.setdefault('pin_memory', True)


def set_cudnn_benchmark(cfg: Config) -> None:
    """cuDNN autotuning (input sizes are fixed in training): ``env_cfg.cudnn_benchmark``, default on, and
    always off with ``randomness.deterministic``; no effect on CPU."""
    wanted = bool((cfg.get('env_cfg') or {}).get('cudnn_benchmark', True))
    torch.backends.cudnn.benchmark = wanted and not (cfg.get('randomness') or {}).get('deterministic', False)


def build_train_model(cfg: Config, device: torch.device, world_size: int) -> tuple[nn.Module, nn.Module]:
    """(estimator, module to train): weights initialised (init_cfg, then ``load_from``), fake-quantised when
    the config asks for QAT (``models.loading.prepare_for_training``), on ``device`` (channels_last on
    CUDA), SyncBN if ``cfg.sync_bn`` on several GPUs, the loss wrapped in a :class:`LossModel` and that in
    DDP when ``world_size`` > 1."""
    model = build_pose_estimator(cfg.model)
    model.init_weights()
    if cfg.get('load_from'):
        report = load_checkpoint(model, resolve_checkpoint(cfg.load_from), strict=False,
                                 origin='load_from')
        logger.info('load_from %s: missing %s, unexpected %s', cfg.load_from, report.missing,
                    report.unexpected)
    model = prepare_for_training(model, cfg)
    if cfg.get('sync_bn') and world_size > 1:
        if device.type == 'cuda':
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            logger.warning('sync_bn needs CUDA; training with per-process BatchNorm')
    model.to(device)
    if device.type == 'cuda':
        model.to(memory_format=torch.channels_last)
    train_model: nn.Module = LossModel(model)
    if world_size > 1:
        train_model = DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == 'cuda' else None,
            find_unused_parameters=bool(cfg.get('find_unused_parameters', False)))
    return model, train_model


def checkpoint_payload(model: nn.Module, ema: Any, optim: Any, schedulers: list, cfg: Config, epoch: int,
                       it: int, best: dict) -> dict[str, Any]:
    """Everything needed to continue after ``epoch`` epochs (``it`` iterations). ``state_dict`` holds the
    weights to deploy (the EMA ones when EMA is on); ``train_state_dict`` the raw ones then. ``meta`` holds
    the epoch, the iteration, the config text and the training ``input_size`` (w, h) of the codec, which
    loading the weights compares with the config's (``models.checkpoints.weights.check_input_size``).

    No RNG states: train.py reseeds every RNG from (seed, epoch, rank) at the start of each epoch and a
    resume starts at an epoch boundary, so they would be redundant (and device-specific: CUDA generator
    states cannot be restored on fewer GPUs or on the CPU)."""
    ema_state = ema.state_dict() if ema is not None else None
    meta = {'epoch': epoch, 'iter': it, 'config': cfg.pretty_text()}
    input_size = (cfg.get('codec') or {}).get('input_size')
    if input_size is not None:
        meta['input_size'] = [int(v) for v in input_size]
    payload = {
        'state_dict': ema_state['module'] if ema_state is not None else model.state_dict(),
        'meta': meta,
        'epoch': epoch, 'iter': it, 'best': dict(best),
        'optimizer': optim.state_dict(), 'schedulers': [s.state_dict() for s in schedulers],
    }
    if ema_state is not None:
        payload['train_state_dict'] = model.state_dict()
        payload['ema_steps'] = ema_state['steps']
    return payload


def restore(ckpt: dict, model: nn.Module, ema: Any, optim: Any, schedulers: list) -> None:
    """Load a :func:`checkpoint_payload` back into the model, EMA, optimizer and schedulers.

    ``ckpt`` may be read to the CPU (``map_location='cpu'``) whatever device wrote it: every tensor is
    copied onto the device of what it restores. An ``rng`` entry of older checkpoints is ignored (see
    :func:`checkpoint_payload`)."""
    model.load_state_dict(ckpt.get('train_state_dict', ckpt['state_dict']))
    if ema is not None:
        ema.load_state_dict({'module': ckpt['state_dict'], 'steps': ckpt.get('ema_steps', 0)})
    optim.load_state_dict(ckpt['optimizer'])
    for scheduler, state in zip(schedulers, ckpt['schedulers']):
        scheduler.load_state_dict(state)
