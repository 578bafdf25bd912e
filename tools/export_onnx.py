"""Export a pose model (RLE / regression / SimCC) or an RTMDet detector to ONNX and check it against PyTorch.

Usage:
    python tools/export_onnx.py CONFIG CHECKPOINT --out FILE.onnx [--opset 17] [--dynamic-batch]
        [--with-decode] [--with-preprocess] [--flip-test | --no-flip-test] [--simplify]
        [--exporter torchscript|dynamo] [--check-data ANN_OR_DIR] [--check-image IMG] [--threads N]
        [--cfg-options ...]
    (--output FILE.onnx, the older spelling, works too)

Pose graphs take crops (B, 3, H, W): float normalised, or uint8 BGR with ``--with-preprocess``; they output
the head's raw outputs, or with ``--with-decode`` keypoints (B, K, 2) in input-crop px and scores (B, K).
The flip test goes into a decoded graph when the config's ``model.test_cfg.flip_test`` is set (as the
PyTorch model predicts; ``--no-flip-test`` leaves it out), and into a raw graph only with ``--flip-test``
(ONNX Runtime can flip raw outputs at run time). Detector graphs take the padded test image and output the raw
per-level head outputs (decoding and NMS run in ``deploy.ort_backend.OrtDetector``). A config with
``quantization = dict(mode='qat')`` and a checkpoint of that QAT run exports an int8 QDQ graph.

After export, ONNX Runtime runs the graph on real crops (the config's val data, or ``--check-data``) or
on ``--check-image`` (detectors), and the max abs difference to PyTorch is printed; a float export fails
(exit 1) when it exceeds ``--atol`` (decoded keypoints: ``--atol`` x crop size px; fp32 PyTorch itself is
~1e-3 px away from a float64 run of the real RLE-0.5x on real crops, so 1e-4 px is below fp32 noise;
single crops typically agree to ~3e-5 on raw outputs and ~2e-3 px on decoded keypoints).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import argparse
import os
import warnings

import numpy as np
import torch

from deploy.deps import require
from deploy.export import EXPORTERS, compare_with_torch, export_detector, export_pose_model, simplify_onnx
from models.checkpoints.model_zoo import add_checkpoint_argument, resolve_checkpoint
from models.loading import is_detector_config, is_qat_config, load_model, model_sections
from utils import cli
from utils.config import load_config, require_sections
from utils.errors import ReportedError
from utils.output_files import atomic_output, refuse_input_as_output
from utils.threads import set_threads


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__)
    cli.add_config_argument(parser, help='pose or detector config file')
    add_checkpoint_argument(parser, help='the model\'s checkpoint (float, or of a QAT run for a QAT config): '
                            'a file, a work dir, a model-zoo name or a URL')
    cli.add_out_argument(parser, cli.output_file('.onnx'), aliases=['--output'], metavar='FILE.onnx',
                         help='ONNX file to write (replaced only after the check passed)')
    parser.add_argument('--opset', type=cli.positive_int, default=None,
                        help='ONNX opset (default 17 with the TorchScript exporter, 18 with dynamo)')
    parser.add_argument('--dynamic-batch', action='store_true', help='free batch dimension')
    parser.add_argument('--with-decode', action='store_true',
                        help='pose: decode in the graph (outputs keypoints, scores)')
    parser.add_argument('--with-preprocess', action='store_true',
                        help='graph input is uint8 BGR; normalisation (and BGR->RGB) in the graph')
    parser.add_argument('--flip-test', action=argparse.BooleanOptionalAction, default=None,
                        help='pose: flip test in the graph (default: with --with-decode, when the config\'s '
                        'model.test_cfg.flip_test is set)')
    parser.add_argument('--simplify', action='store_true', help='run onnxslim / onnxsim on the result')
    parser.add_argument('--exporter', choices=EXPORTERS, default='torchscript',
                        help='torch.onnx exporter: TorchScript (dynamo=False, default) or dynamo')
    parser.add_argument('--check-data', help='pose: COCO annotation file (or folder holding one) whose '
                        'GT-box crops check the export (default: the config\'s val data)')
    parser.add_argument('--check-image', type=cli.input_file('an image file'),
                        help='detector: image that checks the export')
    parser.add_argument('--check-batch', type=cli.positive_int, default=4,
                        help='number of crops for the check')
    parser.add_argument('--atol', type=cli.non_negative_float, default=5e-4,
                        help='tolerance of the float check: raw outputs; decoded keypoints get atol times '
                        'the larger crop side in px (default 5e-4, i.e. 0.096 px at 192x192; a batch of '
                        'crops through oneDNN vs ONNX Runtime differs by up to ~2e-4 on raw outputs)')
    cli.add_threads_argument(parser)
    cli.add_cfg_options_argument(parser)
    return parser.parse_args(argv)


def pose_check_inputs(cfg, args: argparse.Namespace) -> tuple[torch.Tensor, str]:
    """Real uint8 crops (B, 3, H, W) for the check and where they came from (random crops if none)."""
    from deploy.data import annotation_loader, resolve_annotation

    loader = None
    if args.check_data:
        ann_file, img_dir = resolve_annotation(args.check_data, option='--check-data')
        loader = annotation_loader(cfg, ann_file, img_dir, batch_size=args.check_batch)
    else:
        dataset = cfg.get('val_dataloader', {}).get('dataset', {})
        ann_file = os.path.join(dataset.get('data_root') or '', dataset.get('ann_file', ''))
        img_dir = os.path.join(dataset.get('data_root') or '', dataset.get('data_prefix', {}).get('img', ''))
        if os.path.isfile(ann_file):
            loader = annotation_loader(cfg, ann_file, img_dir, batch_size=args.check_batch)
    if loader is None:
        width, height = cfg.codec['input_size']
        warnings.warn('no val data found: checking on random crops (use --check-data)', stacklevel=2)
        return torch.randint(0, 256, (args.check_batch, 3, height, width), dtype=torch.uint8), 'random'
    return next(iter(loader))['inputs'][:args.check_batch], loader.dataset.ann_file


def detector_check_inputs(cfg, args: argparse.Namespace) -> tuple[torch.Tensor, str]:
    """The padded test image (1, 3, H, W) uint8 of ``--check-image`` (random pixels without it)."""
    from deploy.export import detector_input_size
    from models.detection.det_transforms import DetTestTransform

    if not args.check_image:
        width, height = detector_input_size(cfg)
        warnings.warn('no --check-image: checking the detector on random pixels', stacklevel=2)
        return torch.randint(0, 256, (1, 3, height, width), dtype=torch.uint8), 'random'
    from apis.inputs import read_image

    img = read_image(args.check_image)
    pipeline = cfg.get('test_pipeline') or cfg.test_dataloader.dataset.pipeline
    padded, _ = DetTestTransform.from_pipeline(pipeline)(img)
    return torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)))[None], args.check_image


def pose_flip_test(cfg, args: argparse.Namespace) -> bool:
    """Whether the pose graph gets the flip test: ``--[no-]flip-test``, else a decoded graph follows the
    config's ``model.test_cfg.flip_test`` (a raw graph is flipped at run time by ONNX Runtime)."""
    if args.flip_test is not None:
        return args.flip_test
    return bool(args.with_decode and (cfg.model.get('test_cfg') or {}).get('flip_test'))


class ExportCheckError(ReportedError, RuntimeError):
    """The exported graph's outputs differ from PyTorch's beyond ``--atol``; nothing is written."""


def export_and_check(args: argparse.Namespace, cfg, model: torch.nn.Module, path: Path) -> dict[str, float]:
    """Export ``model`` to ``path``, run it in ONNX Runtime and return the max abs differences to PyTorch;
    :class:`ExportCheckError` when a float export exceeds ``--atol``."""
    common = dict(opset=args.opset, dynamic_batch=args.dynamic_batch, with_preprocess=args.with_preprocess)
    if is_detector_config(cfg):
        inputs, source = detector_check_inputs(cfg, args)
        path, wrapper, _ = export_detector(model, cfg, path, exporter=args.exporter, **common)
    else:
        inputs, source = pose_check_inputs(cfg, args)
        flip_indices = None
        print(f'flip test in the graph: {"yes" if pose_flip_test(cfg, args) else "no"}')
        if pose_flip_test(cfg, args):
            from apis.pose import dataset_meta_of
            flip_indices = dataset_meta_of(cfg)['flip_indices']
        if is_qat_config(cfg):
            from deploy.qat import export_qat_onnx
            path, wrapper, _ = export_qat_onnx(model, cfg, path, with_decode=args.with_decode,
                                               flip_indices=flip_indices, **common)
        else:
            path, wrapper, _ = export_pose_model(model, cfg, path, with_decode=args.with_decode,
                                                 flip_indices=flip_indices, exporter=args.exporter, **common)
    if args.simplify:
        try:
            print(f'simplified with {simplify_onnx(path)}')
        except ImportError as err:
            print(f'--simplify skipped: {err}')
    if not args.dynamic_batch:
        inputs = inputs[:1]
    graph_inputs = inputs if args.with_preprocess else model.data_preprocessor(inputs)
    diffs = compare_with_torch(path, wrapper, graph_inputs)
    print(f'check on {len(inputs)} input(s) from {source}: max abs diff ONNX Runtime vs PyTorch')
    for name, value in diffs.items():
        print(f'  {name}: {value:.3g}')
    if is_qat_config(cfg) and not is_detector_config(cfg):
        print('  (int8 kernels vs PyTorch fake-quant: differences of a quantisation step are expected)')
        return diffs
    crop_side = max(cfg.codec['input_size']) if not is_detector_config(cfg) else 1
    failed = {name: value for name, value in diffs.items()  # argmax_ties: a count (see compare_with_torch)
              if name != 'argmax_ties' and value > args.atol * (crop_side if name == 'keypoints' else 1)}
    if failed:
        raise ExportCheckError(f'export check failed (--atol {args.atol}): {failed}; {args.out} was not '
                               'written')
    return diffs


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    set_threads(args.threads)
    refuse_input_as_output(args.out, {'CONFIG': args.config, 'CHECKPOINT': args.checkpoint}, '--out')
    require('onnx', 'ONNX export')
    require('onnxruntime', 'checking the ONNX export')
    cfg = load_config(args.config, args.cfg_options)
    check_data = ['val_dataloader.dataset'] if args.check_data and not is_detector_config(cfg) else []
    require_sections(cfg, [*model_sections(cfg), *check_data], 'tools/export_onnx.py')
    model = load_model(cfg, resolve_checkpoint(args.checkpoint))
    with atomic_output(args.out) as tmp:  # replaced only after the check passed
        diffs = export_and_check(args, cfg, model, tmp)
    print(f'wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB)')
    return diffs


if __name__ == '__main__':
    cli.run_main(main)
