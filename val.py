"""Evaluate a trained top-down pose model on its config's validation set.

    python val.py --cfg_file CONFIG --checkpoint CKPT [--cfg-options ...] [--out-metrics FILE.json]
                  [--dump FILE.json] [--device cpu|cuda] [--batch-size N] [--no-flip] [--show-dir DIR]
    python val.py --checkpoint WORK_DIR          # the config and best.pth (else last.pth) inside

CKPT may be this project's, the original MMPose_Clean project's or an official MMPose 1.x checkpoint.
Builds ``cfg.val_dataloader`` and ``cfg.val_evaluator``, predicts with the flip test of
``cfg.model.test_cfg`` (unless --no-flip), prints a table of the metrics, and optionally writes them
as JSON (--out-metrics), the final keypoint results in COCO results format (--dump) and every
image with its predictions (--show-dir).
Under ``torchrun`` every rank evaluates its shard and rank 0 reports.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from datasets import build_dataloader
from deploy.loading import is_qat_config, load_model
from evaluation import CocoMetric, evaluate_model
from evaluation.coco_metric import write_coco_results
from evaluation.prediction_pictures import save_prediction_pictures
from models import build_pose_estimator
from utils.checkpoint import CheckpointError, load_checkpoint
from utils.cli import run_main
from utils.config import Config, ConfigError, add_cfg_options_argument, load_config
from utils.dist import cleanup, init_distributed, is_main_process
from utils.errors import ArgumentError
from utils.output_files import refuse_input_as_output, write_text_atomic
from utils.registry import METRICS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Evaluate a top-down pose model (COCO keypoint AP)')
    parser.add_argument('--cfg_file', '--cfg-file', dest='cfg_file',
                        help='config file (default: the config inside --checkpoint WORK_DIR)')
    parser.add_argument('--checkpoint', required=True,
                        help='checkpoint file, or a work dir holding the config and best.pth / last.pth')
    parser.add_argument('--out-metrics', help='write all metrics to this JSON file')
    parser.add_argument('--dump', help='write the final keypoint results (COCO results format) here')
    parser.add_argument('--device', choices=['cpu', 'cuda'], help='default cuda when available, else cpu')
    parser.add_argument('--batch-size', type=int, help='override val_dataloader.batch_size')
    parser.add_argument('--num-workers', type=int, help='override val_dataloader.num_workers')
    parser.add_argument('--no-flip', action='store_true', help='disable the flip test')
    parser.add_argument('--show-dir', help='write every image with its predictions (and the ground truth '
                        'in magenta) to this folder')
    add_cfg_options_argument(parser)
    return parser.parse_args(argv)


def resolve_inputs(cfg_file: str | None, checkpoint: str) -> tuple[Path, Path]:
    """(config, checkpoint file) from the arguments; a work dir gives its config and best/last.pth."""
    ckpt = Path(checkpoint)
    if ckpt.is_dir():
        found = next((ckpt / n for n in ('best.pth', 'last.pth') if (ckpt / n).is_file()), None)
        if found is None:
            raise FileNotFoundError(f'work dir {ckpt} holds neither best.pth nor last.pth')
        if cfg_file is None:
            configs = sorted(ckpt.glob('*.py'))
            if len(configs) != 1:
                raise FileNotFoundError(f'work dir {ckpt} holds {len(configs)} config files '
                                        f'({[c.name for c in configs]}); pass --cfg_file')
            cfg_file = str(configs[0])
        ckpt = found
    elif not ckpt.is_file():
        raise FileNotFoundError(f'checkpoint {ckpt} not found')
    if cfg_file is None:
        raise ArgumentError('--cfg_file is required when --checkpoint is a file')
    return Path(cfg_file), ckpt


def configure(cfg: Config, args: argparse.Namespace) -> None:
    """Apply the command-line switches to the config."""
    if args.batch_size is not None:
        cfg.val_dataloader['batch_size'] = args.batch_size
    if args.num_workers is not None:
        cfg.val_dataloader['num_workers'] = args.num_workers
    if args.no_flip:
        cfg.model.setdefault('test_cfg', {})['flip_test'] = False


def build_metrics(cfg: Config) -> list:
    """``cfg.val_evaluator`` (one metric config or a list) as metric objects."""
    evaluator = cfg.get('val_evaluator')
    if evaluator is None:
        raise ConfigError(f'{cfg.filename}: no val_evaluator in the config')
    cfgs = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    return [METRICS.build(c, cfg_path=f'val_evaluator[{i}]' if len(cfgs) > 1 else 'val_evaluator')
            for i, c in enumerate(cfgs)]


def format_table(metrics: dict[str, float]) -> str:
    """Metric names and values as an aligned two-column text table."""
    width = max([len(k) for k in metrics] + [6])
    lines = [f'{"metric":<{width}}  value', f'{"-" * width}  ------']
    lines += [f'{k:<{width}}  {v:.4f}' for k, v in metrics.items()]
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    cfg_file, ckpt = resolve_inputs(args.cfg_file, args.checkpoint)
    for flag in ('--out-metrics', '--dump'):
        output = getattr(args, flag[2:].replace('-', '_'))
        if output:
            refuse_input_as_output(output, {'--cfg_file': cfg_file, '--checkpoint': ckpt}, flag)
    cfg = load_config(cfg_file, args.cfg_options)
    configure(cfg, args)
    _, _, device = init_distributed(args.device)
    try:
        loader = build_dataloader(cfg.val_dataloader, seed=0, cfg_dir=cfg_file.resolve().parent,
                                  cfg_path='val_dataloader')
        metrics = build_metrics(cfg)
        for flag in ('dump', 'show_dir'):
            if getattr(args, flag) and not any(isinstance(m, CocoMetric) for m in metrics):
                raise ArgumentError(f'--{flag.replace("_", "-")} needs a CocoMetric in val_evaluator')
        if is_qat_config(cfg):  # a quantisation-aware training run's checkpoint (fake-quant model)
            model, ckpt_format = load_model(cfg, ckpt), 'qat'
        else:
            model = build_pose_estimator(cfg.model)
            report = load_checkpoint(model, ckpt, map_location='cpu', strict=True)
            if report.format == 'backbone':
                raise CheckpointError(f'{ckpt} holds only backbone weights; evaluation needs a full model')
            ckpt_format = report.format
        model.to(device).eval()
        if is_main_process():
            print(f'loaded {ckpt} (format {ckpt_format}); {len(loader.dataset)} instances, '
                  f'flip test {"on" if cfg.model.get("test_cfg", {}).get("flip_test") else "off"}, '
                  f'device {device}', flush=True)
        results = evaluate_model(model, loader, metrics, device)
        if is_main_process():
            print(format_table(results))
            if args.out_metrics:
                write_text_atomic(args.out_metrics, json.dumps(results, indent=2) + '\n')
            if args.dump:
                coco = next(m for m in metrics if isinstance(m, CocoMetric))
                write_coco_results(coco.coco_results, args.dump)
            if args.show_dir:
                count = save_prediction_pictures(metrics, loader.dataset, args.show_dir)
                print(f'wrote {count} pictures to {args.show_dir}')
        return results
    finally:
        cleanup()


if __name__ == '__main__':
    run_main(main)
