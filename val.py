"""Evaluate a trained top-down pose model on its config's validation set.

    python val.py CONFIG CHECKPOINT [--cfg-options ...] [--out FILE.json] [--dump FILE.json]
                  [--device cpu|cuda|cuda:N] [--batch-size N] [--no-flip] [--show-dir DIR] [--threads N]
    python val.py WORK_DIR               # a training run's folder: its config and best.pth (else last.pth)
    python val.py --cfg_file CONFIG --checkpoint CHECKPOINT     # the original project's spelling

CHECKPOINT is a file (this project's, the original MMPose_Clean project's or an official MMPose 1.x
checkpoint; or an .onnx model exported by tools/export_onnx.py or tools/quantize.py, float or int8, run by
ONNX Runtime), a work dir, a model-zoo name (its config is used when CONFIG is left out) or an http(s) URL.
Builds cfg.val_dataloader and cfg.val_evaluator, predicts with the flip test of cfg.model.test_cfg (unless
--no-flip), prints a table of the metrics, and optionally writes them as JSON (--out, MMPose's name;
--out-metrics works too), the per-instance predictions (--dump, MMPose's name; the file format
tools/eval_predictions.py reads, documented in evaluation/prediction_file.py) and every image with its
predictions (--show-dir, MMPose's name, or --out-dir); each file written is announced in one line.
Under torchrun every rank evaluates its shard and rank 0 reports.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from datasets import build_dataloader
from evaluation import CocoMetric, evaluate_model
from evaluation.metric_coverage import check_metric_coverage
from evaluation.prediction_file import write_predictions
from models import build_pose_estimator
from models.checkpoints import CheckpointError, load_checkpoint
from models.checkpoints.model_zoo import (
    MODEL_ZOO,
    add_checkpoint_argument,
    resolve_checkpoint,
    run_checkpoint,
    zoo_config,
)
from models.loading import is_qat_config, load_model
from utils import cli
from utils.config import Config, ConfigError, load_config, require_sections
from utils.dist import cleanup, init_distributed, is_main_process
from utils.errors import ArgumentError
from utils.output_files import refuse_input_as_output, write_text_atomic
from utils.registry import METRICS
from utils.threads import set_threads
from visualization.prediction_pictures import save_prediction_pictures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__)
    cli.add_config_argument(parser, required=False, dest='cfg_file',
                            help='config file (default: the one in a work dir, or of a model-zoo name, '
                            'given as CHECKPOINT)')
    add_checkpoint_argument(parser, required=False, option=True)
    cli.add_out_argument(parser, cli.output_file('.json'), aliases=['--out-metrics'], required=False,
                         metavar='FILE.json', help='write all metrics to this JSON file')
    parser.add_argument('--dump', type=cli.output_file('.json'), metavar='FILE.json',
                        help='write the per-instance predictions to this JSON file (the format '
                        'tools/eval_predictions.py reads)')
    cli.add_device_argument(parser)
    parser.add_argument('--batch-size', type=cli.positive_int, help='override val_dataloader.batch_size')
    parser.add_argument('--num-workers', type=cli.non_negative_int,
                        help='override val_dataloader.num_workers')
    parser.add_argument('--no-flip', action='store_true', help='disable the flip test')
    parser.add_argument('--show-dir', '--out-dir', dest='show_dir', type=cli.output_dir, metavar='DIR',
                        help='write every image with its predictions (and the ground truth in magenta) to '
                        'this folder')
    cli.add_threads_argument(parser)
    cli.add_cfg_options_argument(parser)
    return parser.parse_args(argv)


def resolve_inputs(cfg_file: str | None, checkpoint: str | None) -> tuple[Path, Path]:
    """(config, local checkpoint file) from the arguments. ``val.py WORK_DIR`` and ``val.py ZOO_NAME``
    give only the checkpoint; a work dir brings its config, a zoo name the config it names."""
    if checkpoint is None:
        if cfg_file is None or not (os.path.isdir(cfg_file) or cfg_file in MODEL_ZOO):
            raise ArgumentError('no checkpoint given: pass CONFIG CHECKPOINT, a work dir or a model-zoo name')
        cfg_file, checkpoint = None, cfg_file
    if cfg_file is None:
        if os.path.isdir(checkpoint):
            run_checkpoint(checkpoint)  # a work dir without best.pth / last.pth is reported first
            configs = sorted(Path(checkpoint).glob('*.py'))
            if len(configs) != 1:
                raise FileNotFoundError(f'work dir {checkpoint} holds {len(configs)} config files '
                                        f'({[c.name for c in configs]}); pass CONFIG')
            cfg_file = str(configs[0])
        elif zoo_config(checkpoint) is not None:
            cfg_file = str(zoo_config(checkpoint))
        else:
            raise ArgumentError(f'a config (CONFIG or --cfg_file) is required with checkpoint {checkpoint}')
    return Path(cfg_file), resolve_checkpoint(checkpoint)


def build_model(cfg: Config, ckpt: Path) -> tuple[object, str]:
    """(model with ``predict``, description of what was loaded): ONNX Runtime for ``.onnx`` files, the
    QAT (fake-quant) model for a QAT config, else the float estimator with the checkpoint loaded."""
    if ckpt.suffix == '.onnx':
        from deploy.ort_backend import OrtPoseModel

        model = OrtPoseModel(ckpt, cfg)
        return model, f'ONNX Runtime, {"int8" if model.is_quantized else "float"}'
    if is_qat_config(cfg):  # a quantisation-aware training run's checkpoint (fake-quant model)
        return load_model(cfg, ckpt, origin='CHECKPOINT'), 'format qat'
    model = build_pose_estimator(cfg.model)
    report = load_checkpoint(model, ckpt, map_location='cpu', strict=True, origin='CHECKPOINT')
    if report.format == 'backbone':
        raise CheckpointError(f'{ckpt} holds only backbone weights; evaluation needs a full model')
    return model, f'format {report.format}'


def json_inputs(cfg: Config) -> dict[str, str | None]:
    """The JSON files an evaluation reads (``--out`` / ``--dump`` must not replace them), by config key."""
    dataset = cfg.get('val_dataloader', {}).get('dataset', {})
    root = dataset.get('data_root') or ''
    evaluator = cfg.get('val_evaluator')
    evaluators = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator or {}]
    files = {'val_dataloader.dataset.ann_file': dataset.get('ann_file'),
             'val_dataloader.dataset.bbox_file': dataset.get('bbox_file'),
             **{f'val_evaluator{f"[{i}]" if len(evaluators) > 1 else ""}.ann_file': e.get('ann_file')
                for i, e in enumerate(evaluators)}}
    return {key: os.path.join(root, path) if key.startswith('val_dataloader') else path
            for key, path in files.items() if isinstance(path, str) and path}


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
    threads = set_threads(args.threads)
    cfg_file, ckpt = resolve_inputs(args.cfg_file, args.checkpoint)
    cfg = load_config(cfg_file, args.cfg_options)
    require_sections(cfg, ['model', 'val_dataloader.dataset', 'val_evaluator'], 'val.py')
    for flag, output in (('--out', args.out), ('--dump', args.dump)):
        if output:
            refuse_input_as_output(output, json_inputs(cfg), flag)
    configure(cfg, args)
    _, _, device = init_distributed(args.device)
    try:
        loader = build_dataloader(cfg.val_dataloader, seed=0, cfg_dir=cfg_file.resolve().parent,
                                  cfg_path='val_dataloader')
        metrics = build_metrics(cfg)
        check_metric_coverage(loader.dataset, metrics)
        for flag in ('dump', 'show_dir'):
            if getattr(args, flag) and not any(isinstance(m, CocoMetric) for m in metrics):
                raise ArgumentError(f'--{flag.replace("_", "-")} needs a CocoMetric in val_evaluator')
        model, loaded = build_model(cfg, ckpt)
        model.to(device).eval()
        flip = getattr(model, 'flip_test', cfg.model.get('test_cfg', {}).get('flip_test'))
        if is_main_process():
            print(f'loaded {ckpt} ({loaded}); {len(loader.dataset)} instances, '
                  f'flip test {"on" if flip else "off"}, device {device}, {threads}', flush=True)
        results = evaluate_model(model, loader, metrics, device)
        if is_main_process():
            print(format_table(results))
            for metric in metrics:  # --cfg-options val_evaluator.outfile_prefix=PREFIX
                if getattr(metric, 'outfile_prefix', None):
                    print(f'wrote {metric.outfile_prefix}.keypoints.json (final COCO results)')
            if args.out:
                write_text_atomic(args.out, json.dumps(results, indent=2) + '\n')
                print(f'wrote {args.out} ({len(results)} metrics)')
            if args.dump:
                coco = next(m for m in metrics if isinstance(m, CocoMetric))
                write_predictions(coco.instances, args.dump)
                print(f'wrote {args.dump} ({len(coco.instances)} predictions)')
            if args.show_dir:
                count = save_prediction_pictures(metrics, loader.dataset, args.show_dir)
                print(f'wrote {count} pictures to {args.show_dir}')
        return results
    finally:
        cleanup()


if __name__ == '__main__':
    cli.run_main(main)
