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
from pathlib import Path
from typing import Any

import torch

import engine
from datasets import build_dataloader
from datasets.batched import INPUT_PIPELINES, build_train_loader, choose_input_pipeline
from evaluation import evaluate_model
from evaluation.metric_coverage import check_metric_coverage
from models.checkpoints import save_checkpoint
from optim import build_ema, build_optimizer, build_schedulers, ema_config, scale_lr
from utils import cli, dist
from utils.config import Config, load_config, require_sections
from utils.logger import FILE_ONLY, collect_env, get_logger, plural
from utils.registry import METRICS
from utils.seed import seed_epoch, set_random_seed
from utils.threads import set_threads
from visualization.prediction_pictures import prediction_mosaic


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__)
    cli.add_config_argument(parser, dest='cfg_file')
    parser.add_argument('--work-dir', '--work_dir', dest='work_dir', type=cli.output_dir,
                        help='output folder (default work_dirs/<YYYYmmddHHMMSS>_<config name>, _2, _3... '
                             'when taken)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help="'auto' (the default when given alone): continue from the work dir's last.pth "
                             '(without --work-dir: the newest run of this config); or a work dir (its '
                             'last.pth; the run continues there) or a checkpoint file. A finished run is '
                             'reported and not trained again')
    parser.add_argument('--resume_ckpt', '--resume-ckpt', dest='resume_ckpt',
                        help="the original project's flag: a work dir to continue in (its last.pth)")
    parser.add_argument('--overwrite', action='store_true',
                        help='start a new run in a work dir that holds checkpoints, replacing them')
    parser.add_argument('--amp', action='store_true', help='mixed precision (bfloat16 autocast)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale lr by total batch size / auto_scale_lr.base_batch_size')
    parser.add_argument('--seed', type=cli.random_seed,
                        help='random seed, 0 to 2**32 - 1 (default: randomness.seed, else 0)')
    parser.add_argument('--deterministic', action='store_true', help='deterministic algorithms')
    cli.add_device_argument(parser)
    cli.add_threads_argument(parser)
    parser.add_argument('--input-pipeline', '--input_pipeline', dest='input_pipeline',
                        choices=INPUT_PIPELINES,
                        help="'device': decode, crop and augment whole batches on the training device; "
                             "'cpu': per sample in loader workers; default: the config's input_pipeline "
                             "('auto': device on CUDA when the recipe allows)")
    cli.add_cfg_options_argument(parser)
    return parser.parse_args(argv)


TRAIN_SECTIONS = ['model', 'train_dataloader.dataset', 'val_dataloader.dataset', 'val_evaluator',
                  'optim_wrapper', 'train_cfg']


def resolve_work_dir(args: argparse.Namespace, cfg_file: str,
                     cfg_resume: bool = False) -> tuple[Path, str | None]:
    """(work dir, checkpoint to resume from or None) from ``--work-dir``, ``--resume`` (a work dir, a file,
    or ``auto``: without ``--work-dir`` the newest ``work_dirs/<stamp>_<config name>[_N]`` holding a
    last.pth), ``--resume_ckpt`` and the config's ``resume``; a new run's default folder is created here
    (``engine.run_dir``: never the folder of another run)."""
    return engine.resolve_run(cfg_file, args.work_dir, args.resume, args.resume_ckpt, cfg_resume)


def configure(cfg: Config, args: argparse.Namespace, device: torch.device) -> None:
    """Apply command-line switches to the config (recorded in the dumped config)."""
    if args.amp:
        engine.enable_amp(cfg, device)
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
    engine.pin_loader_memory(cfg, device)


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


def prepare_work_dir(args: argparse.Namespace, cfg: Config, work_dir: Path, resume_from: str | None) -> None:
    """Refuse to overwrite an earlier run's checkpoints (unless resuming or ``--overwrite``), create the
    work dir and write the resolved config there. Rank 0's job."""
    engine.refuse_overwrite(work_dir, resume_from, args.overwrite)
    work_dir.mkdir(parents=True, exist_ok=True)
    cfg.dump(work_dir / Path(args.cfg_file).name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    with dist.same_on_every_rank():  # the command line and the config: every rank reads the same
        args = parse_args(argv)
        threads = set_threads(args.threads)
        cfg = load_config(args.cfg_file, args.cfg_options)
        require_sections(cfg, TRAIN_SECTIONS, 'train.py')
        backend, timeout = dist.process_group_settings(cfg.get('env_cfg'))
    rank, world_size, device = dist.init_distributed(args.device, backend, timeout)
    with dist.same_on_every_rank():
        configure(cfg, args, device)
        engine.check_training_settings(cfg)
        engine.check_data_paths(cfg)
        # rank 0 picks the work dir; every rank stops with its error, if any
        work_dir, resume_from = cli.run_on_rank_0(
            lambda: resolve_work_dir(args, args.cfg_file, bool(cfg.get('resume'))))
        # every rank reads it: all of them stop if the run has finished
        resumed = engine.read_resume_checkpoint(resume_from) if resume_from else None
    finished = resumed and engine.finished_message(resumed, resume_from, int(cfg.train_cfg['max_epochs']))
    if finished:
        get_logger(None, rank).info('%s', finished)
        dist.cleanup()
        return 0
    with dist.same_on_every_rank():  # rank 0 refuses to overwrite an earlier run, then writes the config
        cli.run_on_rank_0(lambda: prepare_work_dir(args, cfg, work_dir, resume_from))
    logger = get_logger(work_dir / 'train.log', rank)
    # another rank's stop ends this one with its message within seconds (even from inside an NCCL
    # collective, and before rank 0's store goes away with it)
    peer_watch = engine.watch_for_peer_stop(lambda message: (logger.error('%s', message, extra=FILE_ONLY),
                                                             cli.report_error(message)))
    logger.info('Environment:\n%s\nWorld size: %d, device: %s', collect_env(), world_size, device,
                extra=FILE_ONLY)
    logger.info('Config:\n%s', cfg.pretty_text(), extra=FILE_ONLY)
    logger.info('%s -> %s (resolved config and train.log there); device %s, world size %d, %s',
                args.cfg_file, work_dir, device, world_size, threads)
    seed = int(cfg.randomness['seed'])
    set_random_seed(seed, bool(cfg.randomness.get('deterministic', False)))
    engine.set_cudnn_benchmark(cfg)

    model, train_model = engine.build_train_model(cfg, device, world_size)
    distributed = world_size > 1
    cfg_dir = Path(args.cfg_file).parent
    with dist.same_on_every_rank():  # every rank reads the same annotation files
        recipes = choose_input_pipeline(cfg.get('input_pipeline'), device, cfg.train_dataloader['dataset'],
                                        logger)
        logger.info('Input pipeline: %s',
                    f'batched on {device}' if recipes else 'per-sample (loader workers)')
        train_loader = build_train_loader(cfg.train_dataloader, recipes, device, seed=seed,
                                          distributed=distributed, cfg_dir=cfg_dir,
                                          cfg_path='train_dataloader')
        val_loader = build_dataloader(cfg.val_dataloader, seed=seed, distributed=distributed, cfg_dir=cfg_dir,
                                      cfg_path='val_dataloader')
        metric = METRICS.build(cfg.val_evaluator, cfg_path='val_evaluator')
        metric.dataset_meta = val_loader.dataset.metainfo
        check_metric_coverage(val_loader.dataset, metric)
        engine.check_data_sizes(cfg, len(train_loader.dataset), len(train_loader), len(val_loader.dataset),
                                world_size)
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
    if resumed is not None:
        engine.restore(resumed, model, ema, optim, schedulers)
        start_epoch, best = int(resumed['epoch']), {**best, **resumed['best']}
        if int(resumed['iter']) != start_epoch * iters_per_epoch:
            logger.warning('%s was written with %d iterations per epoch, now %d (other batch size or GPU '
                           'count): iteration-based lr schedules shift', resume_from,
                           int(resumed['iter']) // max(start_epoch, 1), iters_per_epoch)
        logger.info('Resumed from %s: continuing at epoch %d of %d', resume_from, start_epoch + 1, max_epochs)
        del resumed  # the optimizer state lives on in optim
    max_iters = max_epochs * iters_per_epoch
    optim.initialize_count_status(start_epoch * iters_per_epoch, max_iters)
    show_bar = rank == 0 and sys.stdout.isatty()
    report = engine.RunReport(logger, work_dir if rank == 0 else None, max_epochs, start_epoch, show_bar)
    report.log_header(model, train_size=len(train_loader.dataset), iters_per_epoch=iters_per_epoch,
                      batch_size=batch_size, world_size=world_size, val_size=len(val_loader.dataset))
    log_interval, vis_images = int(cfg.get('log_interval', 50)), int(cfg.get('vis_num_images', 8))

    saved_epoch = start_epoch  # the epoch last.pth holds
    try:
        for epoch in range(start_epoch, max_epochs):
            if switch_epoch is not None and epoch >= switch_epoch and (stage2 := train_loader.with_stage2()):
                train_loader = stage2
                logger.info('Epoch %d: switched to the stage-2 pipeline (new loader workers)', epoch + 1)
            train_loader.set_epoch(epoch)  # shuffle order and per-sample augmentation seeds of this epoch
            seed_epoch(seed, epoch, rank)  # everything else random in the epoch (e.g. dropout)
            engine.train_one_epoch(train_model, optim, train_loader, epoch, report, device=device,
                                   log_interval=log_interval, batch_size=batch_size, ema=ema,
                                   schedulers=schedulers)
            for scheduler in schedulers:
                if scheduler.by_epoch:
                    scheduler.step()
            for module in (model, ema.module if ema is not None else None):
                if module is not None:  # validate, everywhere, the BN statistics rank 0 will save
                    dist.broadcast_buffers(module)
            validated = improved = False
            if (epoch + 1) % val_interval == 0 or epoch + 1 == max_epochs:
                metrics = evaluate_model(ema.module if ema is not None else model, val_loader, metric, device,
                                         progress=show_bar)
                report.log_metrics(metrics, epoch, len(val_loader))
                validated, improved = True, update_best(best, metrics, ckpt_cfg['rule'], epoch, logger)
            if rank == 0:
                it = (epoch + 1) * iters_per_epoch
                payload = engine.checkpoint_payload(model, ema, optim, schedulers, cfg, epoch + 1, it, best)
                if improved:
                    save_checkpoint(work_dir / 'best.pth', payload)
                    logger.info('Best %s = %.4f at epoch %d: saved best.pth', best['key'], best['score'],
                                epoch + 1)
                save_checkpoint(work_dir / 'last.pth', payload)
                saved_epoch = epoch + 1
                if validated and vis_images > 0:
                    report.log_predictions(prediction_mosaic(metric, val_loader.dataset, vis_images), epoch,
                                           best=improved)
                report.end_epoch(epoch)
            dist.barrier()
    except KeyboardInterrupt:
        again = engine.resume_command(argv, work_dir, args.resume, world_size, resume=saved_epoch > 0)
        state = (f'{work_dir / "last.pth"} holds epoch {saved_epoch} of {max_epochs}. Resume' if saved_epoch
                 else 'no epoch had finished, nothing was saved. Start again')
        logger.warning('Interrupted: nothing half-written; %s with: %s', state, again)
        return 130
    except (engine.NonFiniteLossError, engine.RunStopped) as err:  # no checkpoint; run_main prints the line
        logger.error('%s', err, extra=FILE_ONLY)
        raise
    finally:
        peer_watch.set()
        report.close()
        dist.cleanup()
    report.log_summary(best['key'], ckpt_cfg['rule'])
    score = 'none' if best['score'] is None else f"{best['score']:.4f}"
    logger.info('Training finished after %s; best %s = %s (epoch %s). Work dir: %s',
                plural(max_epochs, 'epoch'), best['key'], score, best['epoch'], work_dir)
    return 0


if __name__ == '__main__':
    cli.run_main(main)
