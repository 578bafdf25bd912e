"""Setting up training from a config: AMP, cuDNN, the model to train (the EMA: ``optim.build_ema``)."""
from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine.loss_model import LossModel
from models import build_pose_estimator
from models.checkpoints import load_checkpoint
from models.checkpoints.model_zoo import resolve_checkpoint
from models.loading import prepare_for_training
from utils.config import Config


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


def build_train_model(cfg: Config, device: torch.device, world_size: int, logger: logging.Logger
                      ) -> tuple[nn.Module, nn.Module]:
    """(estimator, module to train): weights initialised (init_cfg, then ``load_from``), fake-quantised when
    the config asks for QAT (``models.loading.prepare_for_training``), on ``device`` (channels_last on
    CUDA), SyncBN if ``cfg.sync_bn`` on several GPUs, the loss wrapped in a :class:`LossModel` and that in
    DDP when ``world_size`` > 1."""
    model = build_pose_estimator(cfg.model)
    model.init_weights()
    if cfg.get('load_from'):
        report = load_checkpoint(model, resolve_checkpoint(cfg.load_from), strict=False)
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

