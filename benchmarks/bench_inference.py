"""CPU latency of a pose config's network forward (no pre/post-processing): median milliseconds per batch.

    python benchmarks/bench_inference.py CONFIG [CHECKPOINT] [--batch 1 32] [--threads N]
        [--modes eager channels_last fused jit] [--iters N] [--warmup N] [--cfg-options ...]

Modes (each in eval mode under ``torch.inference_mode``):

- ``eager``: the model as built;
- ``channels_last``: weights and input in channels_last memory format;
- ``fused``: Conv+BatchNorm folded (``torch.fx`` conv/bn fusion), channels_last memory format;
- ``jit``: ``fused`` traced with TorchScript, frozen and optimised for inference (oneDNN).

Prints one JSON line per (mode, batch): ``{"mode", "batch", "threads", "median_ms", "p90_ms",
"per_image_ms"}``. ``--threads`` follows the scripts' rule (``utils.threads``: default the free cores).
All modes give the same outputs up to float rounding (checked before timing).

``--onnx`` then times the deployment backends with ``benchmarks/bench_onnx.py`` (needs a CHECKPOINT):
PyTorch eager, ONNX Runtime fp32 and int8 (post-training quantised on ``--calib-data``), uint8 crops in and
keypoints out, and with ``--e2e-data`` the end-to-end top-down images/s of each backend.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import copy
import json
import math
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from models import build_pose_estimator
from models.checkpoints import load_checkpoint
from models.checkpoints.model_zoo import add_checkpoint_argument, resolve_checkpoint
from utils import cli
from utils.config import load_config, require_sections
from utils.threads import set_threads


def prepare(model: nn.Module, mode: str, example: torch.Tensor) -> Callable[[torch.Tensor], object]:
    """The callable timed for ``mode`` (see the module docstring); ``model`` must be in eval mode."""
    if mode == 'eager':
        return model
    if mode == 'channels_last':
        return copy.deepcopy(model).to(memory_format=torch.channels_last)
    fused = fuse(model).to(memory_format=torch.channels_last)
    if mode == 'fused':
        return fused
    if mode == 'jit':
        warnings.filterwarnings('ignore', category=FutureWarning, module=r'torch\.jit')  # deprecation notes
        with torch.inference_mode():
            traced = torch.jit.trace(fused, example.to(memory_format=torch.channels_last))
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
    raise ValueError(f'unknown mode {mode!r}; expected eager, channels_last, fused or jit')


def outputs_close(a: object, b: object) -> bool:
    a = a if isinstance(a, (tuple, list)) else (a,)
    b = b if isinstance(b, (tuple, list)) else (b,)
    return all(torch.allclose(x, y, rtol=1e-3, atol=1e-3) for x, y in zip(a, b))


def time_forward(fn: Callable[[torch.Tensor], object], x: torch.Tensor, iters: int,
                 warmup: int) -> list[float]:
    """Per-call wall times (s) of ``fn(x)`` after ``warmup`` untimed calls."""
    times = []
    with torch.inference_mode():
        for i in range(warmup + iters):
            start = time.perf_counter()
            fn(x)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = cli.ArgumentParser(description=__doc__)
    cli.add_config_argument(parser, help='pose config file')
    add_checkpoint_argument(parser, required=False,
                            help='optional weights: a file, a work dir, a model-zoo name or a URL')
    parser.add_argument('--batch', type=cli.positive_int, nargs='+', default=[1, 32])
    cli.add_threads_argument(parser)
    parser.add_argument('--modes', nargs='+', default=['eager', 'channels_last', 'fused', 'jit'],
                        choices=['eager', 'channels_last', 'fused', 'jit'])
    parser.add_argument('--iters', type=cli.positive_int, default=50)
    parser.add_argument('--warmup', type=cli.non_negative_int, default=10)
    parser.add_argument('--onnx', action='store_true', help='also time ONNX Runtime fp32 / int8 (bench_onnx)')
    parser.add_argument('--calib-data', help='with --onnx: COCO file whose crops calibrate the int8 model')
    parser.add_argument('--e2e-data', help='with --onnx: COCO file for the end-to-end top-down timing')
    cli.add_cfg_options_argument(parser)
    args = parser.parse_args(argv)
    if args.onnx and not args.checkpoint:
        parser.error('--onnx needs a CHECKPOINT (the float weights to export and quantise)')

    threads = set_threads(args.threads).count
    cfg = load_config(args.config, args.cfg_options)
    require_sections(cfg, ['model', 'codec'], 'benchmarks/bench_inference.py')
    model = build_pose_estimator(cfg.model).eval()
    if args.checkpoint:
        args.checkpoint = str(resolve_checkpoint(args.checkpoint))
        load_checkpoint(model, args.checkpoint)
    width, height = cfg.codec['input_size']
    for batch in args.batch:
        x = torch.randn(batch, 3, height, width)
        with torch.inference_mode():
            reference = model(x)
        for mode in args.modes:
            fn = prepare(model, mode, x)
            xin = x if mode == 'eager' else x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                if not outputs_close(fn(xin), reference):
                    raise RuntimeError(f'mode {mode!r} changes the outputs of {args.config}')
            times = sorted(time_forward(fn, xin, args.iters, args.warmup))
            median = statistics.median(times) * 1000
            p90 = times[math.ceil(0.9 * len(times)) - 1] * 1000  # nearest rank: never below the median
            print(json.dumps(dict(mode=mode, batch=batch, threads=threads, median_ms=round(median, 2),
                                  p90_ms=round(p90, 2),
                                  per_image_ms=round(median / batch, 3))), flush=True)
    if args.onnx:
        from benchmarks import bench_onnx

        extra = [f'--{name}={value}' for name, value in (('calib-data', args.calib_data),
                                                          ('e2e-data', args.e2e_data)) if value]
        bench_onnx.main([args.config, args.checkpoint, '--threads', str(threads),
                         '--batch', *map(str, args.batch), *extra,
                         *(['--cfg-options', *args.cfg_options] if args.cfg_options else [])])


if __name__ == '__main__':
    cli.run_main(main)
