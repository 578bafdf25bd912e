"""Post-training int8 quantisation of a pose model with ONNX Runtime (static, QDQ, calibrated on real crops).

Usage:
    python tools/quantize.py CONFIG CHECKPOINT --calib-data ANN_OR_DIR --out FILE.onnx
        [--img-dir DIR] [--eval-data ANN_OR_DIR] [--method minmax|entropy|percentile] [--per-tensor]
        [--no-decode] [--no-preprocess] [--flip-test] [--float-out FILE.onnx] [--threads N]
        [--cfg-options ...]
    (--output and --float-output, the older spellings, work too)

The float model is exported (uint8 BGR input and decoding in the graph unless --no-preprocess /
--no-decode), calibrated on the ground-truth-box crops of a COCO-format annotation file (the config's val
pipeline; each crop also mirrored), and quantised: per-channel symmetric int8 weights, 7-bit in all but
the depthwise convolutions so that x86 CPUs without VNNI compute them exactly (see deploy/ptq.py; BN
folded, each channel's clipping range chosen for least squared error, biases corrected for the mean output
shift on the calibration crops; ``--plain-weights`` skips this), per-tensor uint8 activations. Then the
int8 model is compared with the float ONNX model on ``--eval-data`` (default: the calibration data):
keypoint deviation in input-crop px and COCO AP (the config's val_evaluator, GT boxes); a line starting
``warning:`` says when the int8 AP is more than 0.05 below float.

``--per-tensor`` (one weight scale per tensor, for chips that need it) equalizes the BN-folded weight ranges
across consecutive layers first (deploy/equalization.py) and picks one least-squares grid per tensor. It
costs MobileNetV2 far more than per-channel weights: on the sample, RLE-0.5x keypoints move 6.8 px from
float and AP drops 0.62 -> 0.29 (per-channel: 1.9 px, AP 0.61); without equalization they moved 181 px
(AP 0).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import argparse
import contextlib
import json
import os
import tempfile
import time

from deploy.deps import require
from deploy.export import export_pose_model
from deploy.ptq import CALIBRATION_METHODS, quantize_pose_model
from models.checkpoints.model_zoo import add_checkpoint_argument, resolve_checkpoint
from models.loading import is_detector_config, load_model
from utils import cli
from utils.config import load_config, require_sections
from utils.errors import ArgumentError
from utils.output_files import atomic_output, refuse_input_as_output
from utils.threads import set_threads

AP_DROP_WARNING = 0.05  # int8 AP this far below float gets a warning line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__)
    cli.add_config_argument(parser, help='pose config file')
    add_checkpoint_argument(parser, help='float checkpoint: a file, a work dir, a model-zoo name or a URL')
    parser.add_argument('--calib-data', required=True,
                        help='COCO-format keypoint annotation file (or a folder holding exactly one)')
    parser.add_argument('--img-dir', help='image folder of the annotation files (default: their folder)')
    cli.add_out_argument(parser, cli.output_file('.onnx'), aliases=['--output'], metavar='FILE.onnx',
                         help='int8 ONNX file to write')
    parser.add_argument('--eval-data', help='annotation file for the accuracy report (default --calib-data)')
    parser.add_argument('--method', choices=CALIBRATION_METHODS, default='minmax',
                        help='activation range calibration (default minmax)')
    parser.add_argument('--per-tensor', action='store_true',
                        help='one weight scale per tensor instead of per channel, after cross-layer '
                             'equalization (MobileNetV2 RLE-0.5x sample: 6.8 px from float, AP 0.62 -> '
                             '0.29; per-channel 1.9 px, AP 0.61)')
    parser.add_argument('--plain-weights', action='store_true',
                        help='skip the least-squares weight grids and bias correction (plain max-abs)')
    parser.add_argument('--no-decode', action='store_true', help='graph outputs raw head outputs')
    parser.add_argument('--no-preprocess', action='store_true', help='graph input is float normalised')
    parser.add_argument('--flip-test', action='store_true', help='flip test in the graph')
    parser.add_argument('--float-out', '--float-output', dest='float_out', type=cli.output_file('.onnx'),
                        metavar='FILE.onnx', help='also keep the float ONNX model here')
    parser.add_argument('--batch-size', type=cli.positive_int, default=32,
                        help='crops per batch when evaluating')
    cli.add_threads_argument(parser)
    cli.add_cfg_options_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    set_threads(args.threads)
    require('onnxruntime.quantization', 'int8 quantisation')
    from deploy.accuracy import coco_ap, keypoint_deviation
    from deploy.data import annotation_loader, resolve_annotation, stack_inputs
    from deploy.ort_backend import OrtPoseModel

    inputs = {'CONFIG': args.config, 'CHECKPOINT': args.checkpoint, '--calib-data': args.calib_data,
              '--eval-data': args.eval_data}
    refuse_input_as_output(args.out, inputs, '--out')
    if args.float_out:
        refuse_input_as_output(args.float_out, {**inputs, '--out': args.out}, '--float-out')
    cfg = load_config(args.config, args.cfg_options)
    if is_detector_config(cfg):
        raise ArgumentError(f'{args.config}: tools/quantize.py handles pose models; this is a detector '
                            'config')
    require_sections(cfg, ['model', 'codec', 'val_dataloader.dataset', 'val_evaluator'], 'tools/quantize.py')
    model = load_model(cfg, resolve_checkpoint(args.checkpoint))
    flip_indices = None
    if args.flip_test:
        from apis.pose import dataset_meta_of
        flip_indices = dataset_meta_of(cfg)['flip_indices']
    calib_ann, calib_dir = resolve_annotation(args.calib_data, args.img_dir)
    eval_ann, eval_dir = resolve_annotation(args.eval_data or args.calib_data, args.img_dir,
                                            '--eval-data' if args.eval_data else '--calib-data')
    with contextlib.ExitStack() as stack:  # outputs are renamed into place only when everything succeeded
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        int8_path = stack.enter_context(atomic_output(args.out))
        float_path = stack.enter_context(atomic_output(args.float_out)) if args.float_out else \
            os.path.join(tmp, 'float.onnx')
        graph = dict(dynamic_batch=True, with_decode=not args.no_decode,
                     with_preprocess=not args.no_preprocess, flip_indices=flip_indices)
        export_pose_model(model, cfg, float_path, **graph)
        float_model = OrtPoseModel(float_path, cfg, flip_test=args.flip_test)
        crops = stack_inputs(annotation_loader(cfg, calib_ann, calib_dir, args.batch_size), with_flipped=True)
        start = time.perf_counter()
        quantize_pose_model(model, cfg, int8_path, crops, prepare_weights=not args.plain_weights,
                            per_channel=not args.per_tensor, method=args.method, **graph)
        print(f'quantised {args.out} on {len(crops)} crops from {calib_ann} '
              f'({time.perf_counter() - start:.1f} s, {args.method}, '
              f'{"per-tensor" if args.per_tensor else "per-channel"} weights)')
        int8_model = OrtPoseModel(int8_path, cfg, flip_test=args.flip_test)
        loader = annotation_loader(cfg, eval_ann, eval_dir, args.batch_size)
        report = dict(deviation_px=keypoint_deviation(float_model, int8_model, loader),
                      float_ap=coco_ap(float_model, cfg, loader, eval_ann),
                      int8_ap=coco_ap(int8_model, cfg, loader, eval_ann))
    for path in (args.out, args.float_out):
        if path:
            print(f'wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB)')
    width, height = cfg.codec['input_size']
    print(f'int8 vs float keypoints on {eval_ann} ({width}x{height} crops): '
          + ', '.join(f'{k} {v:.3f}' for k, v in report['deviation_px'].items()))
    print(f"COCO AP (GT boxes): float {report['float_ap'].get('coco/AP', float('nan')):.4f}, "
          f"int8 {report['int8_ap'].get('coco/AP', float('nan')):.4f}")
    warn_on_ap_drop(report['float_ap'].get('coco/AP', float('nan')),
                    report['int8_ap'].get('coco/AP', float('nan')), args.per_tensor)
    print(json.dumps(report))
    return report


def warn_on_ap_drop(float_ap: float, int8_ap: float, per_tensor: bool) -> bool:
    """Print one ``warning:`` line (stderr) when the int8 AP is more than :data:`AP_DROP_WARNING` below
    float; returns whether it did."""
    if not float_ap - int8_ap > AP_DROP_WARNING:
        return False
    hint = ('per-tensor weights lose this much on MobileNetV2-like networks; per-channel weights (without '
            '--per-tensor) keep the AP' if per_tensor else 'try --method entropy or more --calib-data')
    print(f'warning: int8 COCO AP {int8_ap:.4f} is far below float {float_ap:.4f} ({hint})', file=sys.stderr)
    return True


if __name__ == '__main__':
    cli.run_main(main)
