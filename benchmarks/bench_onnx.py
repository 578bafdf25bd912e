"""CPU latency of a pose model per backend: PyTorch eager, ONNX Runtime fp32 and ONNX Runtime int8 (PTQ).

    python benchmarks/bench_onnx.py CONFIG CHECKPOINT [--threads N] [--batch 1 32] [--repeats 5]
        [--iters 50] [--calib-data ANN] [--int8 FILE.onnx] [--qat-int8 FILE.onnx] [--e2e-data ANN]
        [--cfg-options ...]

Every backend does the same work: uint8 BGR crops in, keypoints (input-crop px) and scores out (PyTorch:
``preprocess`` + ``forward`` + ``head.decode``; ONNX graphs exported with preprocessing and decoding
inside). The int8 model is quantised here (``--calib-data``: real crops; without it random crops, fine
for timing only) unless ``--int8`` gives one; ``--qat-int8`` adds an int8 graph exported from a QAT run.
Each (backend, batch) is timed ``--repeats`` times (``--iters`` runs each, after warm-up) and the median
of the repeat medians is printed, with the spread, because other processes may share the cores.

``--e2e-data ANN`` also times the top-down pipeline per backend on the ground-truth boxes of a COCO file
(``apis.inference_topdown``: image decode, crops, model, mapping back), as images/s.

Prints one JSON line per measurement.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch

from deploy.deps import require
from deploy.export import export_pose_model
from deploy.ptq import quantize_pose_model
from models.checkpoints.model_zoo import add_checkpoint_argument, resolve_checkpoint
from models.loading import load_model
from utils import cli
from utils.config import load_config, require_sections
from utils.threads import set_threads


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__)
    cli.add_config_argument(parser, help='pose config file')
    add_checkpoint_argument(parser, help='float checkpoint: a file, a work dir, a model-zoo name or a URL')
    cli.add_threads_argument(parser)
    parser.add_argument('--batch', type=cli.positive_int, nargs='+', default=[1, 32], help='batch sizes')
    parser.add_argument('--repeats', type=cli.positive_int, default=5, help='timing repeats per measurement')
    parser.add_argument('--iters', type=cli.positive_int, default=50,
                        help='runs per repeat at batch 1 (fewer at larger)')
    parser.add_argument('--calib-data', help='COCO annotation file whose crops calibrate the int8 model')
    parser.add_argument('--int8', type=cli.input_file('an int8 .onnx file'),
                        help='use this int8 ONNX file instead of quantising here')
    parser.add_argument('--qat-int8', type=cli.input_file('an int8 .onnx file'),
                        help='also time this int8 ONNX file exported from a QAT run')
    parser.add_argument('--e2e-data', help='COCO annotation file for the end-to-end top-down timing')
    cli.add_cfg_options_argument(parser)
    return parser.parse_args(argv)


def time_it(fn: Callable[[], object], iters: int, repeats: int) -> dict[str, float]:
    """Median ms of ``fn`` per repeat; returns the median, min and max over repeats."""
    for _ in range(max(2, iters // 10)):
        fn()
    medians = []
    for _ in range(repeats):
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        medians.append(statistics.median(times) * 1000)
    return dict(median_ms=round(statistics.median(medians), 3), min_ms=round(min(medians), 3),
                max_ms=round(max(medians), 3))


def calibration_crops(cfg, calib_data: str | None) -> np.ndarray:
    """uint8 crops (N, 3, H, W): real ones from ``calib_data``, else random (fine for timing only)."""
    from deploy.data import annotation_loader, resolve_annotation, stack_inputs

    if calib_data:
        ann, img_dir = resolve_annotation(calib_data)
        return stack_inputs(annotation_loader(cfg, ann, img_dir), with_flipped=True)
    width, height = cfg.codec['input_size']
    return np.random.default_rng(0).integers(0, 256, (16, 3, height, width), dtype=np.uint8)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    require('onnxruntime', 'the ONNX Runtime benchmark')
    from deploy.ort_backend import OrtPoseModel

    threads = set_threads(args.threads).count  # ONNX Runtime sessions use as many
    cfg = load_config(args.config, args.cfg_options)
    calib = ['val_dataloader.dataset'] if args.calib_data else []
    require_sections(cfg, ['model', 'codec', *calib], 'benchmarks/bench_onnx.py')
    cfg.model.setdefault('test_cfg', {})['flip_test'] = False  # the same single pass on every backend
    model = load_model(cfg, resolve_checkpoint(args.checkpoint))
    width, height = cfg.codec['input_size']
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        float_path = os.path.join(tmp, 'float.onnx')
        export_pose_model(model, cfg, float_path, dynamic_batch=True, with_decode=True, with_preprocess=True)
        int8_path = args.int8 or os.path.join(tmp, 'int8.onnx')
        if not args.int8:
            quantize_pose_model(model, cfg, int8_path, calibration_crops(cfg, args.calib_data),
                                dynamic_batch=True, with_decode=True, with_preprocess=True)
        backends: dict[str, object] = {'pytorch_eager': model,
                                       'ort_fp32': OrtPoseModel(float_path, cfg),
                                       'ort_int8': OrtPoseModel(int8_path, cfg)}
        if args.qat_int8:
            backends['ort_int8_qat'] = OrtPoseModel(args.qat_int8, cfg)

        def runner(name: str, backend: object, x: torch.Tensor) -> Callable[[], object]:
            if name == 'pytorch_eager':
                def run() -> object:
                    with torch.inference_mode():
                        return model.head.decode(model(model.preprocess(x)))
                return run
            graph_x = x.numpy()
            return lambda: backend.run(graph_x)

        for batch in args.batch:
            x = torch.from_numpy(np.random.default_rng(batch).integers(0, 256, (batch, 3, height, width),
                                                                      dtype=np.uint8))
            iters = max(5, args.iters // batch ** 0.5)
            for name, backend in backends.items():
                row = dict(backend=name, batch=batch, threads=threads,
                           **time_it(runner(name, backend, x), int(iters), args.repeats))
                row['per_image_ms'] = round(row['median_ms'] / batch, 3)
                print(json.dumps(row), flush=True)
                results.append(row)
        if args.e2e_data:
            results += end_to_end(cfg, backends, args)
    return results


def end_to_end(cfg, backends: dict[str, object], args: argparse.Namespace) -> list[dict]:
    """images/s of ``apis.inference_topdown`` on the GT boxes of ``--e2e-data`` per backend."""
    from apis.pose import dataset_meta_of, inference_topdown, val_pipeline_of
    from datasets.transforms import Compose
    from deploy.data import resolve_annotation

    ann_file, img_dir = resolve_annotation(args.e2e_data, option='--e2e-data')
    with open(ann_file) as f:
        data = json.load(f)
    boxes: dict[int, list] = {}
    for ann in data['annotations']:
        x, y, w, h = ann['bbox']
        boxes.setdefault(ann['image_id'], []).append([x, y, x + w, y + h])
    images = [(os.path.join(img_dir, img['file_name']), np.asarray(boxes.get(img['id'], [[0, 0, 1, 1]])))
              for img in data['images']]
    rows = []
    for name, backend in backends.items():
        backend.cfg, backend.dataset_meta = cfg, dataset_meta_of(cfg)
        backend.pipeline = Compose(val_pipeline_of(cfg))

        def run(backend: object = backend) -> None:
            for path, bbox in images:
                inference_topdown(backend, path, bbox)

        timing = time_it(run, 3, args.repeats)
        row = dict(backend=name, e2e_images=len(images), people=sum(len(b) for _, b in images),
                   images_per_s=round(len(images) * 1000 / timing['median_ms'], 2), **timing)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


if __name__ == '__main__':
    cli.run_main(main)
