"""Train a top-down pose model from a config.

    python train.py CONFIG [--work-dir DIR] [--resume [auto|CKPT]] [--amp] [--cfg-options ...]
    torchrun --nproc_per_node N train.py CONFIG ...
    (--cfg_file CONFIG, the original project's spelling, works too)

One epoch: reseed from (seed, epoch, rank), train on the shuffled loader (lr schedulers stepped per
iteration or per epoch, EMA after each step), validate every ``train_cfg.val_interval`` epochs, then
write ``best.pth`` (when the ``checkpoint.save_best`` metric improved) and ``last.pth``. Rank 0 logs,
validates-and-saves on behalf of all (every rank evaluates its shard; the metric gathers them).
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter

from datasets import build_dataloader
from datasets.batch_picture import train_batch_picture
from datasets.batched import INPUT_PIPELINES, build_train_loader, choose_input_pipeline
from deploy.loading import is_qat_config
from deploy.qat import prepare_qat
from evaluation import evaluate_model
from evaluation.prediction_pictures import prediction_mosaic
from models import build_pose_estimator
from optim import build_ema, build_optimizer, build_schedulers, scale_lr
from utils.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from utils.cli import run_main
from utils.config import Config, add_cfg_options_argument, add_config_argument, load_config
from utils.dist import barrier, broadcast_buffers, broadcast_object, cleanup, init_distributed
from utils.errors import ReportedError
from utils.logger import FILE_ONLY, RunLog, collect_env, get_logger
from utils.model_zoo import resolve_checkpoint
from utils.registry import METRICS
from utils.run_checks import check_data_sizes, check_training_settings, refuse_overwrite
from utils.seed import seed_epoch, set_random_seed
from utils.train_state import checkpoint_payload, restore


class NonFiniteLossError(ReportedError, RuntimeError):
    """A loss term became NaN or infinite; training stops without writing a checkpoint."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(parser, dest='cfg_file')
    parser.add_argument('--work-dir', '--work_dir', dest='work_dir',
                        help='output folder (default work_dirs/<YYYYmmddHHMM>_<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help="'auto' (the default when given alone): continue from the work dir's last.pth; "
                             'or a checkpoint path')
    parser.add_argument('--resume_ckpt', '--resume-ckpt', dest='resume_ckpt',
                        help="the original project's flag: a work dir to continue in (its last.pth)")
    parser.add_argument('--overwrite', action='store_true',
                        help='start a new run in a work dir that holds checkpoints, replacing them')
    parser.add_argument('--amp', action='store_true', help='mixed precision (bfloat16 autocast)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale lr by total batch size / auto_scale_lr.base_batch_size')
    parser.add_argument('--seed', type=int, help='random seed (default: randomness.seed, else 0)')
    parser.add_argument('--deterministic', action='store_true', help='deterministic algorithms')
    parser.add_argument('--device', choices=['cpu', 'cuda'],
                        help='default cuda when available, else cpu')
    parser.add_argument('--input-pipeline', '--input_pipeline', dest='input_pipeline',
                        choices=INPUT_PIPELINES,
                        help="'device': decode, crop and augment whole batches on the training device; "
                             "'cpu': per sample in loader workers; default: the config's input_pipeline "
                             "('auto': device on CUDA when the recipe allows)")
    add_cfg_options_argument(parser)
    return parser.parse_args(argv)


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


def resolve_work_dir(args: argparse.Namespace, cfg_file: str,
                     cfg_resume: bool = False) -> tuple[Path, str | None]:
    """(work dir, checkpoint to resume from or None). ``--resume auto`` without ``--work-dir`` picks
    the newest ``work_dirs/*_<config name>`` holding a last.pth."""
    name = Path(cfg_file).stem
    resume = args.resume or ('auto' if cfg_resume else None)
    if args.resume_ckpt:
        given = Path(args.resume_ckpt)
        work_dir, resume = (given, 'auto') if given.is_dir() else (given.parent, str(given))
    elif args.work_dir:
        work_dir = Path(args.work_dir)
    elif resume == 'auto' and sorted(Path('work_dirs').glob(f'*_{name}/last.pth')):
        work_dir = sorted(Path('work_dirs').glob(f'*_{name}/last.pth'))[-1].parent
    else:
        work_dir = Path('work_dirs') / f'{datetime.now():%Y%m%d%H%M}_{name}'
    if resume == 'auto':
        resume = str(work_dir / 'last.pth') if (work_dir / 'last.pth').is_file() else None
    elif resume is not None and not Path(resume).is_file():
        raise FileNotFoundError(f'--resume: checkpoint {resume!r} not found')
    return work_dir, resume


def configure(cfg: Config, args: argparse.Namespace, device: torch.device) -> None:
    """Apply command-line switches to the config (recorded in the dumped config)."""
    if args.amp:
        cfg.optim_wrapper['type'] = 'AmpOptimWrapper'
        bf16_ok = device.type != 'cuda' or torch.cuda.is_bf16_supported()
        cfg.optim_wrapper.setdefault('dtype', 'bfloat16' if bf16_ok else 'float16')
    if args.auto_scale_lr:
        cfg.setdefault('auto_scale_lr', {})['enable'] = True
    randomness = cfg.setdefault('randomness', {})
    if args.seed is not None:
        randomness['seed'] = args.seed
    if randomness.get('seed') is None:
        randomness['seed'] = 0
    if args.deterministic:
        randomness['deterministic'] = True
    if args.input_pipeline:
        cfg['input_pipeline'] = args.input_pipeline
    if device.type == 'cuda':  # pinned host memory lets the uint8 batch copy overlap the step
        cfg.train_dataloader.setdefault('pin_memory', True)
        cfg.val_dataloader.setdefault('pin_memory', True)


class StepStats:
    """Loss terms and grad norms of each iteration, kept on the device and read back one iteration
    late (or when logging), so the step itself never waits for the device."""

    def __init__(self) -> None:
        self.pending: tuple[int, list[str], torch.Tensor] | None = None
        self.window: dict[str, list[float]] = defaultdict(list)

    def push(self, it: int, losses: dict[str, Any], grad_norm: torch.Tensor | None,
             device: torch.device) -> None:
        """Keep iteration ``it``'s 0-d loss terms and grad norm on ``device``; read back the previous one."""
        names = list(losses) + (['grad_norm'] if grad_norm is not None else [])
        values = [torch.as_tensor(v, device=device).detach().float().reshape(()) for v in losses.values()]
        if grad_norm is not None:
            values.append(grad_norm.detach().float().reshape(()))
        self.resolve()
        self.pending = (it, names, torch.stack(values))

    def resolve(self) -> None:
        """Read back the pending iteration; raise NonFiniteLossError naming the iteration and term."""
        if self.pending is None:
            return
        it, names, stacked = self.pending
        self.pending = None
        for name, value in zip(names, stacked.tolist()):
            if name.startswith('loss') and not math.isfinite(value):
                raise NonFiniteLossError(f'non-finite loss at iteration {it + 1}: {name} = {value}. '
                                         'The last checkpoint on disk is left as it was; lower the lr or '
                                         'check the data of this iteration.')
            self.window[name].append(value)

    def means(self) -> dict[str, float]:
        """Mean of each term over the iterations since the last call (window then cleared)."""
        self.resolve()
        out = {k: sum(v) / len(v) for k, v in self.window.items() if v}
        self.window.clear()
        return out


class LossModel(nn.Module):
    """``forward(inputs, targets) -> estimator.loss(...)``: DDP must wrap a forward that computes the
    loss so that its gradient all-reduce hooks fire."""

    def __init__(self, estimator: nn.Module) -> None:
        super().__init__()
        self.estimator = estimator

    def forward(self, inputs: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """uint8 (B, 3, H, W) BGR images and (B, ...) targets -> the estimator's loss dict."""
        return self.estimator.loss(inputs, targets)


def train_one_epoch(run: RunLog, train_model: nn.Module, model: nn.Module, loader: Any, optim: Any,
                    schedulers: list, ema: Any, epoch: int) -> None:
    """One pass over ``loader``: forward+loss (under the wrapper's autocast/no_sync), update, EMA,
    per-iteration schedulers, logging."""
    device = run.device
    channels_last = device.type == 'cuda'
    iters_per_epoch = len(loader)
    it = epoch * iters_per_epoch
    stats = StepStats()
    train_model.train()
    end = time.perf_counter()
    data_time = step_time = 0.0
    for i, batch in enumerate(run.progress(loader, epoch)):
        data_time += time.perf_counter() - end
        inputs = batch['inputs'].to(device, non_blocking=True)
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        targets = {k: v.to(device, non_blocking=True) for k, v in batch['targets'].items()}
        lr = optim.param_groups[0]['lr']
        try:
            with optim.optim_context(train_model):
                losses = train_model(inputs, targets)
            grad_norm = optim.update_params(sum(v for k, v in losses.items() if k.startswith('loss')))
        except torch.OutOfMemoryError as err:
            raise SystemExit(
                f'CUDA out of memory at batch size {run.batch_size} per GPU ({run.world_size} GPUs): lower '
                f'it, e.g. --cfg-options train_dataloader.batch_size={max(run.batch_size // 2, 1)}, or use '
                f'--amp. ({err})') from None
        if ema is not None:
            ema.update_parameters(model)
        for scheduler in schedulers:
            if not scheduler.by_epoch:
                scheduler.step()
        stats.push(it, losses, grad_norm, device)
        it += 1
        run.iters += 1
        step_time += time.perf_counter() - end
        end = time.perf_counter()
        if (i + 1) % run.log_interval == 0 or i + 1 == iters_per_epoch:
            means = stats.means()
            n = i % run.log_interval + 1
            run.log_train(epoch, i, iters_per_epoch, it, lr, means, step_time / n, data_time / n)
            data_time = step_time = 0.0
    stats.resolve()


def update_best(best: dict[str, Any], metrics: dict[str, float], rule: str, epoch: int,
                logger: logging.Logger) -> bool:
    """Record ``metrics[best['key']]`` in ``best`` if it beats the best so far under ``rule``."""
    if best['key'] not in metrics:
        logger.warning('checkpoint.save_best %r is not among the metrics %s', best['key'], list(metrics))
        return False
    score = float(metrics[best['key']])
    old = best['score']
    if old is not None and not (score > old if rule == 'greater' else score < old):
        return False
    best.update(score=score, epoch=epoch + 1)
    return True


def build_model(cfg: Config, device: torch.device, world_size: int,
                logger: logging.Logger) -> tuple[nn.Module, nn.Module]:
    """(estimator, module to train): weights initialised (init_cfg, then ``load_from``), on ``device``
    (channels_last on CUDA), SyncBN if ``cfg.sync_bn`` on several GPUs, the loss wrapped in DDP."""
    model = build_pose_estimator(cfg.model)
    model.init_weights()
    if cfg.get('load_from'):
        report = load_checkpoint(model, resolve_checkpoint(cfg.load_from), strict=False)
        logger.info('load_from %s: missing %s, unexpected %s', cfg.load_from, report.missing,
                    report.unexpected)
    if is_qat_config(cfg):  # fine-tune with fake-quant; export with tools/export_onnx.py
        model = prepare_qat(model, cfg.quantization)
        logger.info('quantisation-aware training: %s', dict(cfg.quantization))
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.cfg_file, args.cfg_options)
    rank, world_size, device = init_distributed(args.device, cfg.get('env_cfg', {}).get('dist_backend'))
    configure(cfg, args, device)
    check_training_settings(cfg)
    check_data_paths(cfg)
    chosen = resolve_work_dir(args, args.cfg_file, bool(cfg.get('resume'))) if rank == 0 else None
    work_dir, resume_from = broadcast_object(chosen)
    if rank == 0:
        refuse_overwrite(work_dir, resume_from, args.overwrite)
        work_dir.mkdir(parents=True, exist_ok=True)
        cfg.dump(work_dir / Path(args.cfg_file).name)
    logger = get_logger(work_dir / 'train.log', rank)
    logger.info('Environment:\n%s\nWorld size: %d, device: %s', collect_env(), world_size, device,
                extra=FILE_ONLY)
    logger.info('Config:\n%s', cfg.pretty_text(), extra=FILE_ONLY)
    logger.info('%s -> %s (resolved config and train.log there); device %s, world size %d', args.cfg_file,
                work_dir, device, world_size)
    seed = int(cfg.randomness['seed'])
    set_random_seed(seed, bool(cfg.randomness.get('deterministic', False)))
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = bool(cfg.get('env_cfg', {}).get('cudnn_benchmark', False)) \
            and not cfg.randomness.get('deterministic', False)

    model, train_model = build_model(cfg, device, world_size, logger)
    distributed = world_size > 1
    cfg_dir = Path(args.cfg_file).parent
    recipes = choose_input_pipeline(cfg.get('input_pipeline'), device, cfg.train_dataloader['dataset'],
                                    logger)
    logger.info('Input pipeline: %s', f'batched on {device}' if recipes else 'per-sample (loader workers)')
    train_loader = build_train_loader(cfg.train_dataloader, recipes, device, seed=seed,
                                      distributed=distributed, cfg_dir=cfg_dir, cfg_path='train_dataloader')
    val_loader = build_dataloader(cfg.val_dataloader, seed=seed, distributed=distributed, cfg_dir=cfg_dir,
                                  cfg_path='val_dataloader')
    metric = METRICS.build(cfg.val_evaluator, cfg_path='val_evaluator')
    metric.dataset_meta = val_loader.dataset.metainfo
    check_data_sizes(cfg, len(train_loader.dataset), len(train_loader), len(val_loader.dataset), world_size)
    iters_per_epoch = len(train_loader)
    max_epochs = int(cfg.train_cfg['max_epochs'])
    val_interval = int(cfg.train_cfg.get('val_interval', 1))
    stage2_epochs = int(cfg.get('stage2_num_epochs') or 0)
    switch_epoch = max_epochs - stage2_epochs if stage2_epochs else None  # 0-based: the last stage2_epochs

    optim = build_optimizer(model, cfg.optim_wrapper)
    total_batch = cfg.train_dataloader['batch_size'] * world_size
    ratio = scale_lr(optim, cfg.get('auto_scale_lr'), total_batch)
    if ratio != 1.0:
        logger.info('auto_scale_lr: lr x %g (total batch %d, base %d)', ratio, total_batch,
                    cfg.auto_scale_lr['base_batch_size'])
    schedulers = build_schedulers(optim, cfg.get('param_scheduler'), iters_per_epoch, max_epochs)
    hooks = list(cfg.get('custom_hooks') or [])
    ema_cfg = next((h for h in hooks if h.get('type') == 'EMAHook'), None)
    for hook in hooks:
        if hook.get('type') != 'EMAHook':
            logger.warning('custom_hooks: %s is not supported and is ignored (stage 2 comes from '
                           'stage2_num_epochs + the dataset pipeline_stage2)', hook.get('type'))
    ema = build_ema(model, ema_cfg)
    ckpt_cfg = {'save_best': 'coco/AP', 'rule': 'greater', **(cfg.get('checkpoint') or {})}
    best: dict[str, Any] = {'key': ckpt_cfg['save_best'], 'score': None, 'epoch': None}

    start_epoch = 0
    if resume_from is None and (args.resume or args.resume_ckpt):
        logger.warning('--resume: no last.pth in %s; starting from scratch', work_dir)
    if resume_from:
        ckpt = read_checkpoint(resume_from, map_location=device)
        restore(ckpt, model, ema, optim, schedulers)
        start_epoch, best = int(ckpt['epoch']), {**best, **ckpt['best']}
        if int(ckpt['iter']) != start_epoch * iters_per_epoch:
            logger.warning('%s was written with %d iterations per epoch, now %d (other batch size or GPU '
                           'count): iteration-based lr schedules shift', resume_from,
                           int(ckpt['iter']) // max(start_epoch, 1), iters_per_epoch)
        logger.info('Resumed from %s: continuing at epoch %d', resume_from, start_epoch + 1)
    max_iters = max_epochs * iters_per_epoch
    optim.initialize_count_status(start_epoch * iters_per_epoch, max_iters)
    run = RunLog(logger, SummaryWriter(str(work_dir / 'tensorboard')) if rank == 0 else None, device,
                 int(cfg.get('log_interval', 50)), max_iters, rank == 0 and sys.stdout.isatty(),
                 cfg.train_dataloader['batch_size'], world_size, work_dir=work_dir if rank == 0 else None,
                 start_epoch=start_epoch, max_epochs=max_epochs, val_iters=len(val_loader),
                 batch_picture=lambda batch: train_batch_picture(batch, train_loader.dataset.metainfo))
    run.log_header(model, len(train_loader.dataset), iters_per_epoch, len(val_loader.dataset))
    vis_images = int(cfg.get('vis_num_images', 8))

    try:
        for epoch in range(start_epoch, max_epochs):
            if switch_epoch is not None and epoch >= switch_epoch and train_loader.switch_to_stage2():
                logger.info('Epoch %d: switched to the stage-2 pipeline (workers restarted)', epoch + 1)
            train_loader.set_epoch(epoch)  # shuffle order and per-sample augmentation seeds of this epoch
            seed_epoch(seed, epoch, rank)  # everything else random in the epoch (e.g. dropout)
            train_one_epoch(run, train_model, model, train_loader, optim, schedulers, ema, epoch)
            for scheduler in schedulers:
                if scheduler.by_epoch:
                    scheduler.step()
            for module in (model, ema.module if ema is not None else None):
                if module is not None:  # validate, everywhere, the BN statistics rank 0 will save
                    broadcast_buffers(module)
            improved = False
            if (epoch + 1) % val_interval == 0 or epoch + 1 == max_epochs:
                metrics = evaluate_model(ema.module if ema is not None else model, val_loader, metric, device,
                                         progress=run.show_bar)
                run.log_metrics(metrics, epoch)
                improved = update_best(best, metrics, ckpt_cfg['rule'], epoch, logger)
            if rank == 0:
                it = (epoch + 1) * iters_per_epoch
                payload = checkpoint_payload(model, ema, optim, schedulers, cfg, epoch + 1, it, best)
                if improved:
                    save_checkpoint(work_dir / 'best.pth', payload)
                    logger.info('Best %s = %.4f at epoch %d: saved best.pth', best['key'], best['score'],
                                epoch + 1)
                save_checkpoint(work_dir / 'last.pth', payload)
                if run.metrics and vis_images > 0:
                    run.log_picture(f'val_epoch{epoch + 1}_pred.jpg',
                                    prediction_mosaic(metric, val_loader.dataset, vis_images), epoch + 1,
                                    'val/predictions')
                run.end_epoch(epoch)
            barrier()
    except KeyboardInterrupt:
        logger.warning('Interrupted: nothing half-written; %s holds the last finished epoch',
                       work_dir / 'last.pth')
        return 130
    except NonFiniteLossError as err:
        logger.error('%s', err)
        return 1
    finally:
        run.close()
        cleanup()
    run.log_summary(best['key'], ckpt_cfg['rule'])
    score = 'none' if best['score'] is None else f"{best['score']:.4f}"
    logger.info('Training finished after %d epochs; best %s = %s (epoch %s). Work dir: %s', max_epochs,
                best['key'], score, best['epoch'], work_dir)
    return 0


if __name__ == '__main__':
    run_main(main)
