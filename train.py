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
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from datasets import build_dataloader
from datasets.batched import INPUT_PIPELINES, build_train_loader, choose_input_pipeline
from engine import (
    NonFiniteLossError,
    RunReport,
    RunStopped,
    build_train_model,
    check_data_paths,
    check_data_sizes,
    check_training_settings,
    checkpoint_payload,
    enable_amp,
    pin_loader_memory,
    refuse_overwrite,
    restore,
    set_cudnn_benchmark,
    train_one_epoch,
    watch_for_peer_stop,
)
from evaluation import evaluate_model
from evaluation.metric_coverage import check_metric_coverage
from models.checkpoints import read_checkpoint, save_checkpoint
from optim import build_ema, build_optimizer, build_schedulers, ema_config, scale_lr
from utils.cli import (
    ArgumentParser,
    add_device_argument,
    add_threads_argument,
    output_dir,
    random_seed,
    run_main,
)
from utils.config import Config, add_cfg_options_argument, add_config_argument, load_config
from utils.dist import barrier, broadcast_buffers, broadcast_object, cleanup, init_distributed
from utils.logger import FILE_ONLY, collect_env, get_logger
from utils.registry import METRICS
from utils.seed import seed_epoch, set_random_seed
from utils.threads import set_threads
from visualization.prediction_pictures import prediction_mosaic


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__)
    add_config_argument(parser, dest='cfg_file')
    parser.add_argument('--work-dir', '--work_dir', dest='work_dir', type=output_dir,
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
    parser.add_argument('--seed', type=random_seed,
                        help='random seed, 0 to 2**32 - 1 (default: randomness.seed, else 0)')
    parser.add_argument('--deterministic', action='store_true', help='deterministic algorithms')
    add_device_argument(parser)
    add_threads_argument(parser)
    parser.add_argument('--input-pipeline', '--input_pipeline', dest='input_pipeline',
                        choices=INPUT_PIPELINES,
                        help="'device': decode, crop and augment whole batches on the training device; "
                             "'cpu': per sample in loader workers; default: the config's input_pipeline "
                             "('auto': device on CUDA when the recipe allows)")
    add_cfg_options_argument(parser)
    return parser.parse_args(argv)


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
        enable_amp(cfg, device)
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
    pin_loader_memory(cfg, device)


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = set_threads(args.threads)
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
    logger.info('%s -> %s (resolved config and train.log there); device %s, world size %d, %s',
                args.cfg_file, work_dir, device, world_size, threads)
    seed = int(cfg.randomness['seed'])
    set_random_seed(seed, bool(cfg.randomness.get('deterministic', False)))
    set_cudnn_benchmark(cfg)

    model, train_model = build_train_model(cfg, device, world_size)
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
    check_metric_coverage(val_loader.dataset, metric)
    check_data_sizes(cfg, len(train_loader.dataset), len(train_loader), len(val_loader.dataset), world_size)
    iters_per_epoch = len(train_loader)
    max_epochs = int(cfg.train_cfg['max_epochs'])
    val_interval = int(cfg.train_cfg.get('val_interval', 1))
    stage2_epochs = int(cfg.get('stage2_num_epochs') or 0)
    switch_epoch = max_epochs - stage2_epochs if stage2_epochs else None  # 0-based: the last stage2_epochs

    optim = build_optimizer(model, cfg.optim_wrapper)
    batch_size = cfg.train_dataloader['batch_size']
    scale_lr(optim, cfg.get('auto_scale_lr'), batch_size * world_size)
    schedulers = build_schedulers(optim, cfg.get('param_scheduler'), iters_per_epoch, max_epochs)
    ema = build_ema(model, ema_config(cfg))
    ckpt_cfg = {'save_best': 'coco/AP', 'rule': 'greater', **(cfg.get('checkpoint') or {})}
    best: dict[str, Any] = {'key': ckpt_cfg['save_best'], 'score': None, 'epoch': None}

    start_epoch = 0
    if resume_from is None and (args.resume or args.resume_ckpt):
        logger.warning('--resume: no last.pth in %s; starting from scratch', work_dir)
    if resume_from:
        ckpt = read_checkpoint(resume_from, map_location='cpu')  # restore() copies onto the device
        restore(ckpt, model, ema, optim, schedulers)
        start_epoch, best = int(ckpt['epoch']), {**best, **ckpt['best']}
        if int(ckpt['iter']) != start_epoch * iters_per_epoch:
            logger.warning('%s was written with %d iterations per epoch, now %d (other batch size or GPU '
                           'count): iteration-based lr schedules shift', resume_from,
                           int(ckpt['iter']) // max(start_epoch, 1), iters_per_epoch)
        logger.info('Resumed from %s: continuing at epoch %d', resume_from, start_epoch + 1)
    max_iters = max_epochs * iters_per_epoch
    optim.initialize_count_status(start_epoch * iters_per_epoch, max_iters)
    show_bar = rank == 0 and sys.stdout.isatty()
    report = RunReport(logger, work_dir if rank == 0 else None, max_epochs, start_epoch, show_bar)
    report.log_header(model, train_size=len(train_loader.dataset), iters_per_epoch=iters_per_epoch,
                      batch_size=batch_size, world_size=world_size, val_size=len(val_loader.dataset))
    log_interval, vis_images = int(cfg.get('log_interval', 50)), int(cfg.get('vis_num_images', 8))
    # NCCL: a rank stuck in a collective whose peer has stopped ends with that peer's message
    peer_watch = watch_for_peer_stop(lambda message: logger.error('%s', message)) if device.type == 'cuda' \
        else None

    try:
        for epoch in range(start_epoch, max_epochs):
            if switch_epoch is not None and epoch >= switch_epoch and (stage2 := train_loader.with_stage2()):
                train_loader = stage2
                logger.info('Epoch %d: switched to the stage-2 pipeline (new loader workers)', epoch + 1)
            train_loader.set_epoch(epoch)  # shuffle order and per-sample augmentation seeds of this epoch
            seed_epoch(seed, epoch, rank)  # everything else random in the epoch (e.g. dropout)
            train_one_epoch(train_model, optim, train_loader, epoch, report, device=device,
                            log_interval=log_interval, batch_size=batch_size, ema=ema, schedulers=schedulers)
            for scheduler in schedulers:
                if scheduler.by_epoch:
                    scheduler.step()
            for module in (model, ema.module if ema is not None else None):
                if module is not None:  # validate, everywhere, the BN statistics rank 0 will save
                    broadcast_buffers(module)
            validated = improved = False
            if (epoch + 1) % val_interval == 0 or epoch + 1 == max_epochs:
                metrics = evaluate_model(ema.module if ema is not None else model, val_loader, metric, device,
                                         progress=show_bar)
                report.log_metrics(metrics, epoch, len(val_loader))
                validated, improved = True, update_best(best, metrics, ckpt_cfg['rule'], epoch, logger)
            if rank == 0:
                it = (epoch + 1) * iters_per_epoch
                payload = checkpoint_payload(model, ema, optim, schedulers, cfg, epoch + 1, it, best)
                if improved:
                    save_checkpoint(work_dir / 'best.pth', payload)
                    logger.info('Best %s = %.4f at epoch %d: saved best.pth', best['key'], best['score'],
                                epoch + 1)
                save_checkpoint(work_dir / 'last.pth', payload)
                if validated and vis_images > 0:
                    report.log_predictions(prediction_mosaic(metric, val_loader.dataset, vis_images), epoch,
                                           best=improved)
                report.end_epoch(epoch)
            barrier()
    except KeyboardInterrupt:
        logger.warning('Interrupted: nothing half-written; %s holds the last finished epoch',
                       work_dir / 'last.pth')
        return 130
    except (NonFiniteLossError, RunStopped) as err:  # one line on every rank, no checkpoint written
        logger.error('%s', err)
        return 1
    finally:
        if peer_watch is not None:
            peer_watch.set()
        report.close()
        cleanup()
    report.log_summary(best['key'], ckpt_cfg['rule'])
    score = 'none' if best['score'] is None else f"{best['score']:.4f}"
    logger.info('Training finished after %d epochs; best %s = %s (epoch %s). Work dir: %s', max_epochs,
                best['key'], score, best['epoch'], work_dir)
    return 0


if __name__ == '__main__':
    run_main(main)
