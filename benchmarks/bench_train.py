"""Training throughput of a config: images/s, share of time waiting for data, peak GPU memory.

    python benchmarks/bench_train.py CONFIG [--synthetic | --synthetic-jpeg [N] [--jpeg-dir DIR]]
                                     [--input-pipeline device|cpu] [--iters N] [--warmup N]
                                     [--device cpu|cuda] [--amp] [--batch-size B] [--json] [--cfg-options ...]

Runs what train.py runs, through the same functions: the model built by ``engine.run`` (channels_last
and fused optimizers on CUDA, SyncBN/QAT as configured), the config's EMA hook and lr schedulers,
``engine.prepare_batch`` (pinned uint8 batches, ``non_blocking`` copies, normalisation on the device) and
``engine.train_step`` with its device-side statistics read back once per ``log_interval``. ``--amp`` is
train.py's ``--amp`` (bfloat16 where supported, else float16 with loss scaling; a dtype in the config wins).
``--synthetic`` feeds random uint8 images and codec targets (no files, no augmentation) to measure the
step alone; without it the config's train loader is used. ``--synthetic-jpeg N`` trains on N realistic
640x480 JPEGs (several people each, ~110 kB; ``benchmarks/synthetic_jpeg.py``) written to a temporary
folder (or to ``--jpeg-dir``, kept and reused by later runs), through the config's train pipeline, so
that decoding costs what it does on COCO.
``--input-pipeline`` picks the per-sample loader (``cpu``) or the batched one that decodes, crops and
augments on the device (``device``; default as train.py: device on CUDA when the recipe allows); the
loader's host work per sample (reading + augmenting, or reading + drawing parameters, and collating) is
measured in this process too. ``--json`` adds one JSON line with the figures.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import functools
import itertools
import json
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
from engine import (
    StepStats,
    build_train_model,
    enable_amp,
    pin_loader_memory,
    prepare_batch,
    set_cudnn_benchmark,
    train_step,
)
from optim import build_ema, build_optimizer, build_schedulers, ema_config
from utils import cli
from utils.config import load_config, require_sections
from utils.threads import set_threads


def synthetic_batches(cfg, batch_size: int, pin: bool, seed: int = 0) -> Iterator[dict]:
    """Endless random batches shaped like the train pipeline's output (targets from the codec), in pinned
    host memory when ``pin`` (as the train loader gives them on CUDA)."""
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
        if pin:
            inputs, targets = inputs.pin_memory(), {k: v.pin_memory() for k, v in targets.items()}
        pool.append({'inputs': inputs, 'targets': targets})
    return itertools.cycle(pool)


def use_synthetic_jpegs(cfg, folder: Path, n_images: int) -> None:
    """Train on ``n_images`` synthetic JPEGs written to ``folder`` (unless its ``ann.json`` already lists
    ``n_images``: they are deterministic), through the config's train pipelines (repeated 10 times per
    epoch, so that epoch ends rarely interrupt the loader's prefetching)."""
    ann = folder / 'ann.json'
    if not (ann.is_file() and len(json.loads(ann.read_text())['images']) == n_images):
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
    fetch = getattr(dataset, '__getitems__', None) or (lambda keys: [dataset[k] for k in keys])  # as torch's
    threads = cv2.getNumThreads()
    cv2.setNumThreads(0)
    collate(fetch([(i % len(dataset), i) for i in range(min(batch, 32))]))  # warm-up: page cache, imports
    cpu, wall = time.thread_time(), time.perf_counter()
    for start in range(0, n, batch):
        collate(fetch([(i % len(dataset), 1000 + i) for i in range(start, min(start + batch, n))]))
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    cv2.setNumThreads(threads)
    return 1000 * cpu / n, 1000 * wall / n


def main(argv: list[str] | None = None) -> None:
    parser = cli.ArgumentParser(description=__doc__)
    cli.add_config_argument(parser, help='pose config file (its model, optimizer and train loader)')
    parser.add_argument('--synthetic', action='store_true', help='random batches instead of the train loader')
    parser.add_argument('--synthetic-jpeg', type=cli.positive_int, nargs='?', const=256, metavar='N',
                        help='train on N (default 256) synthetic 640x480 JPEGs written to a temporary folder')
    parser.add_argument('--jpeg-dir', help='write the --synthetic-jpeg images here instead (kept; reused '
                                           'when it already holds N)')
    parser.add_argument('--input-pipeline', choices=INPUT_PIPELINES,
                        help="per-sample loader ('cpu') or batched on the device ('device'); default: as "
                             'train.py')
    parser.add_argument('--iters', type=cli.positive_int, default=50, help='timed iterations')
    parser.add_argument('--warmup', type=cli.non_negative_int, default=5, help='untimed iterations first')
    parser.add_argument('--batch-size', type=cli.positive_int, help='override train_dataloader.batch_size')
    parser.add_argument('--amp', action='store_true', help="mixed precision, as train.py's --amp")
    parser.add_argument('--json', action='store_true', help='also print the figures as one JSON line')
    cli.add_device_argument(parser, default='cuda' if torch.cuda.is_available() else 'cpu')
    cli.add_threads_argument(parser)
    cli.add_cfg_options_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    require_sections(cfg, ['model', 'codec', 'train_dataloader', 'optim_wrapper', 'train_cfg'],
                     'benchmarks/bench_train.py')
    device = torch.device(args.device)
    if args.batch_size:
        cfg.train_dataloader['batch_size'] = args.batch_size
    if args.amp:
        enable_amp(cfg, device)
    pin_loader_memory(cfg, device)
    set_cudnn_benchmark(cfg)
    cfg.model['backbone']['init_cfg'] = None  # the weights do not change the speed: no pretrained files
    cfg['load_from'] = None
    batch_size = cfg.train_dataloader['batch_size']
    logger = logging.getLogger('mmpose_clean.benchmarks')

    model, train_model = build_train_model(cfg, device, 1)
    optim = build_optimizer(model, cfg.optim_wrapper)
    if args.synthetic:
        batches = synthetic_batches(cfg, batch_size, pin=device.type == 'cuda')
        iters_per_epoch = args.warmup + args.iters
        host_work = None
    else:
        if args.synthetic_jpeg:
            if args.jpeg_dir:
                folder = Path(args.jpeg_dir)
            else:
                jpeg_dir = tempfile.TemporaryDirectory(prefix='bench_train_jpeg_')  # removed at exit
                folder = Path(jpeg_dir.name)
            use_synthetic_jpegs(cfg, folder, args.synthetic_jpeg)
        recipes = choose_input_pipeline(args.input_pipeline or cfg.get('input_pipeline'), device,
                                        cfg.train_dataloader['dataset'], logger)
        loader = build_train_loader(cfg.train_dataloader, recipes, device, seed=0, distributed=False,
                                    cfg_dir=Path(args.config).parent)
        host_work = ('batched: read + draw' if recipes else 'per-sample: read + augment',
                     *host_ms_per_sample(loader))
        batches = itertools.chain.from_iterable(itertools.repeat(loader))
        iters_per_epoch = len(loader)
    schedulers = build_schedulers(optim, cfg.get('param_scheduler'), iters_per_epoch,
                                  int(cfg.train_cfg['max_epochs']))
    ema = build_ema(model, ema_config(cfg))
    log_interval = int(cfg.get('log_interval', 50))
    stats = StepStats(log_interval)
    prepare = functools.partial(prepare_batch, device=device, channels_last=device.type == 'cuda')
    train_model.train()

    def step(it: int) -> float:
        """One iteration as train.py's loop runs it; returns the seconds spent waiting for the batch."""
        t0 = time.perf_counter()
        batch = next(batches)
        waited = time.perf_counter() - t0
        train_step(train_model, optim, prepare(batch), it, stats, ema, schedulers)
        if (it + 1) % log_interval == 0:
            stats.means()
        return waited

    for it in range(args.warmup):
        step(it)
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    readbacks_before = stats.readbacks
    wait = 0.0
    start = time.perf_counter()
    for it in range(args.warmup, args.warmup + args.iters):
        wait += step(it)
    if device.type == 'cuda':
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    figures = dict(
        config=args.config, device=str(device), batch=batch_size,
        amp=cfg.optim_wrapper.get('dtype') if args.amp else None,
        data=('synthetic' if args.synthetic else
              f'{args.synthetic_jpeg} synthetic JPEGs' if args.synthetic_jpeg else 'train loader'),
        input_pipeline=host_work[0].split(':')[0] if host_work else None,
        host_ms_per_sample=round(host_work[1], 3) if host_work else None, ema=ema is not None,
        images_per_s=round(args.iters * batch_size / total, 1),
        ms_per_iter=round(total / args.iters * 1000, 1),
        data_wait_share=round(wait / total, 4), readbacks=stats.readbacks - readbacks_before,
        peak_memory_mb=round(torch.cuda.max_memory_allocated() / 2 ** 20) if device.type == 'cuda' else None,
        peak_host_memory_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    print(f"config: {args.config}  device: {device}  batch: {batch_size}  amp: {figures['amp'] or 'off'}  "
          f"EMA: {'on' if figures['ema'] else 'off'}  data: {figures['data']}")
    if host_work is not None:
        print(f'input pipeline: {host_work[0]}, {host_work[1]:.3f} CPU ms/sample on the host '
              f'({host_work[2]:.3f} ms wall)')
    print(f"throughput: {figures['images_per_s']:.1f} img/s  ({figures['ms_per_iter']:.1f} ms/iter)")
    print(f"waiting for data: {100 * figures['data_wait_share']:.1f} % of the time")
    print(f"statistics read back {figures['readbacks']} times in {args.iters} iterations "
          f'(log_interval {log_interval})')
    print(f"peak GPU memory: {figures['peak_memory_mb'] if device.type == 'cuda' else 'n/a (cpu)'}"
          f"{' MB' if device.type == 'cuda' else ''}; peak host memory (this process): "
          f"{figures['peak_host_memory_mb']} MB")
    if args.json:
        print(json.dumps(figures))


if __name__ == '__main__':
    cli.run_main(main)
