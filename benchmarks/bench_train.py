"""Training throughput of a config: images/s, share of time waiting for data, peak GPU memory.

    python benchmarks/bench_train.py CONFIG [--synthetic | --synthetic-jpeg [N]]
                                     [--input-pipeline device|cpu] [--iters N] [--warmup N]
                                     [--device cpu|cuda] [--amp] [--batch-size B] [--cfg-options ...]

``--synthetic`` feeds random uint8 images and codec targets (no files, no augmentation) to measure
the model step alone; without it the config's real train loader is used. ``--synthetic-jpeg N``
trains on N realistic 640x480 JPEGs (several people each, ~110 kB; ``benchmarks/synthetic_jpeg.py``)
written to a temporary folder, through the config's train pipeline, so that decoding costs what it
does on COCO. ``--input-pipeline`` picks the per-sample loader (``cpu``) or the batched one that
decodes, crops and augments on the device (``device``; default as train.py: device on CUDA when the
recipe allows); the per-sample host work of the loader (reading + augmenting, or reading + drawing
parameters) is measured in this process too. The step is the one
train.py runs: optimizer wrapper (fused AdamW on CUDA), channels_last, uint8 transfer with
normalisation on the device; ``--amp`` adds bfloat16 autocast.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import argparse
import itertools
import logging
import resource
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import torch

from benchmarks.synthetic_jpeg import write_synthetic_coco
from codec import build_codec
from datasets.batched import INPUT_PIPELINES, build_train_loader, choose_input_pipeline
from models import build_pose_estimator
from optim import build_optimizer
from train import LossModel
from utils.cli import run_main
from utils.config import add_cfg_options_argument, add_config_argument, load_config


def synthetic_batches(cfg, batch_size: int, seed: int = 0) -> Iterator[dict]:
    """Endless random batches shaped like the train pipeline's output (targets from the codec)."""
    codec = build_codec(cfg.codec)
    width, height = cfg.codec['input_size']
    num_kpts = cfg.model['head'].get('num_joints') or cfg.model['head'].get('out_channels', 17)
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(4):
        kpts = rng.uniform(0, [width, height], (batch_size, 1, num_kpts, 2)).astype(np.float32)
        encoded = [codec.encode(k, np.ones((1, num_kpts), np.float32)) for k in kpts]
        targets = {}
        for name in encoded[0]:
            arrays = [np.asarray(e[name]) for e in encoded]
            arrays = [a[0] if a.ndim >= 2 and a.shape[0] == 1 else a for a in arrays]
            targets[name] = torch.from_numpy(np.stack(arrays).astype(np.float32))
        inputs = torch.from_numpy(rng.integers(0, 256, (batch_size, 3, height, width), dtype=np.uint8))
        if torch.cuda.is_available():
            inputs = inputs.pin_memory()
        pool.append({'inputs': inputs, 'targets': targets})
    return itertools.cycle(pool)


def use_synthetic_jpegs(cfg, folder: Path, n_images: int) -> None:
    """Train on ``n_images`` synthetic JPEGs written to ``folder``, through the config's train pipelines
    (repeated 10 times per epoch, so that epoch ends rarely interrupt the loader's prefetching)."""
    ann = write_synthetic_coco(folder, n_images)
    dataset = cfg.train_dataloader['dataset']
    while dataset.get('type') == 'RepeatDataset':
        dataset = dataset['dataset']
    pipelines = {k: dataset[k] for k in ('pipeline', 'pipeline_stage2') if dataset.get(k)}
    images = dict(type='CocoDataset', ann_file=str(ann), data_prefix=dict(img=str(folder)), **pipelines)
    cfg.train_dataloader['dataset'] = dict(type='RepeatDataset', times=10, dataset=images)


def host_ms_per_sample(loader: Any, n: int = 256) -> tuple[float, float]:
    """(CPU ms, wall ms) per sample of what a loader worker does, run in this thread with one OpenCV
    thread: ``dataset[(i, seed)]`` and the collate function over ``n`` samples in loader-sized batches
    (the per-sample pipeline's whole work, or the batched pipeline's reading and parameter drawing)."""
    raw = getattr(loader, 'loader', loader)  # a DeviceBatchLoader wraps the raw-batch loader
    dataset, collate, batch = raw.dataset, raw.collate_fn, raw.batch_sampler.batch_size
    threads = cv2.getNumThreads()
    cv2.setNumThreads(0)
    collate([dataset[(i % len(dataset), i)] for i in range(min(batch, 32))])  # warm-up: page cache, imports
    cpu, wall = time.thread_time(), time.perf_counter()
    for start in range(0, n, batch):
        collate([dataset[(i % len(dataset), 1000 + i)] for i in range(start, min(start + batch, n))])
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    cv2.setNumThreads(threads)
    return 1000 * cpu / n, 1000 * wall / n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(parser, help='pose config file (its model, optimizer and train loader)')
    parser.add_argument('--synthetic', action='store_true', help='random batches instead of the train loader')
    parser.add_argument('--synthetic-jpeg', type=int, nargs='?', const=256, metavar='N',
                        help='train on N (default 256) synthetic 640x480 JPEGs written to a temporary folder')
    parser.add_argument('--input-pipeline', choices=INPUT_PIPELINES,
                        help="per-sample loader ('cpu') or batched on the device ('device'); default: as "
                             'train.py')
    parser.add_argument('--iters', type=int, default=50, help='timed iterations')
    parser.add_argument('--warmup', type=int, default=5, help='untimed iterations first')
    parser.add_argument('--batch-size', type=int, help='override train_dataloader.batch_size')
    parser.add_argument('--amp', action='store_true', help='bfloat16 autocast')
    parser.add_argument('--device', choices=['cpu', 'cuda'],
                        default='cuda' if torch.cuda.is_available() else 'cpu')
    add_cfg_options_argument(parser)
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    if args.batch_size:
        cfg.train_dataloader['batch_size'] = args.batch_size
    if args.amp:
        cfg.optim_wrapper.update(type='AmpOptimWrapper', dtype='bfloat16')
    batch_size = cfg.train_dataloader['batch_size']
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = device.type == 'cuda'

    model = build_pose_estimator(cfg.model).to(device)
    channels_last = device.type == 'cuda'
    if channels_last:
        model.to(memory_format=torch.channels_last)
    train_model = LossModel(model).train()
    optim = build_optimizer(model, cfg.optim_wrapper)
    host_work = None
    if args.synthetic:
        batches = synthetic_batches(cfg, batch_size)
    else:
        if args.synthetic_jpeg:
            jpeg_dir = tempfile.TemporaryDirectory(prefix='bench_train_jpeg_')  # removed at exit
            use_synthetic_jpegs(cfg, Path(jpeg_dir.name), args.synthetic_jpeg)
        recipes = choose_input_pipeline(args.input_pipeline or cfg.get('input_pipeline'), device,
                                        cfg.train_dataloader['dataset'], logging.getLogger('bench_train'))
        loader = build_train_loader(cfg.train_dataloader, recipes, device, seed=0, distributed=False,
                                    cfg_dir=Path(args.config).parent)
        host_work = ('batched: read + draw' if recipes else 'per-sample: read + augment',
                     *host_ms_per_sample(loader))
        batches = itertools.chain.from_iterable(itertools.repeat(loader))

    def step(batch: dict) -> None:
        inputs = batch['inputs'].to(device, non_blocking=True)
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        targets = {k: v.to(device, non_blocking=True) for k, v in batch['targets'].items()}
        with optim.optim_context(train_model):
            losses = train_model(inputs, targets)
        optim.update_params(sum(v for k, v in losses.items() if k.startswith('loss')))

    for _ in range(args.warmup):
        step(next(batches))
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    wait = 0.0
    start = time.perf_counter()
    for _ in range(args.iters):
        t0 = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - t0
        step(batch)
    if device.type == 'cuda':
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    mem = f'{torch.cuda.max_memory_allocated() / 2 ** 20:.0f} MB' if device.type == 'cuda' else 'n/a (cpu)'
    data = ('synthetic' if args.synthetic else
            f'{args.synthetic_jpeg} synthetic JPEGs' if args.synthetic_jpeg else 'train loader')
    print(f'config: {args.config}  device: {device}  batch: {batch_size}  amp: {args.amp}  data: {data}')
    if host_work is not None:
        print(f'input pipeline: {host_work[0]}, {host_work[1]:.3f} CPU ms/sample on the host '
              f'({host_work[2]:.3f} ms wall)')
    print(f'throughput: {args.iters * batch_size / total:.1f} img/s  '
          f'({total / args.iters * 1000:.1f} ms/iter)')
    print(f'waiting for data: {100 * wait / total:.1f} % of the time')
    print(f'peak GPU memory: {mem}; peak host memory (this process): '
          f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB')


if __name__ == '__main__':
    run_main(main)
