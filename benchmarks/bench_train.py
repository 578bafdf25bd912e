"""Training throughput of a config: images/s, share of time waiting for data, peak GPU memory.

    python benchmarks/bench_train.py CONFIG [--synthetic] [--iters N] [--warmup N] [--device cpu|cuda]
                                     [--amp] [--batch-size B] [--json] [--cfg-options ...]

Runs what train.py runs, through the same functions: the model built by ``engine.setup`` (channels_last
and fused optimizers on CUDA, SyncBN/QAT as configured), the config's EMA hook and lr schedulers,
``engine.prepare_batch`` (pinned uint8 batches, ``non_blocking`` copies, normalisation on the device) and
``engine.train_step`` with its device-side statistics read back once per ``log_interval``. ``--amp`` is
train.py's ``--amp`` (bfloat16 where supported, else float16 with loss scaling; a dtype in the config wins).
``--synthetic`` feeds random uint8 images and codec targets (no files, no augmentation) to measure the
step alone; without it the config's train loader is used. ``--json`` adds one JSON line with the figures.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import argparse
import functools
import itertools
import json
import logging
import time
from collections.abc import Iterator

import numpy as np
import torch

from codec import build_codec
from deploy.qat import prepare_for_training
from engine import StepStats, prepare_batch, train_step
from engine.setup import (
    build_ema_from_hooks,
    build_train_model,
    enable_amp,
    pin_loader_memory,
    set_cudnn_benchmark,
)
from optim import build_optimizer, build_schedulers
from utils.cli import run_main
from utils.config import add_cfg_options_argument, add_config_argument, load_config


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(parser, help='pose config file (its model, optimizer and train loader)')
    parser.add_argument('--synthetic', action='store_true', help='random batches instead of the train loader')
    parser.add_argument('--iters', type=int, default=50, help='timed iterations')
    parser.add_argument('--warmup', type=int, default=5, help='untimed iterations first')
    parser.add_argument('--batch-size', type=int, help='override train_dataloader.batch_size')
    parser.add_argument('--amp', action='store_true', help="mixed precision, as train.py's --amp")
    parser.add_argument('--json', action='store_true', help='also print the figures as one JSON line')
    parser.add_argument('--device', choices=['cpu', 'cuda'],
                        default='cuda' if torch.cuda.is_available() else 'cpu')
    add_cfg_options_argument(parser)
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
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
    logger = logging.getLogger('bench_train')

    model, train_model = build_train_model(cfg, device, 1, logger, prepare_for_training)
    optim = build_optimizer(model, cfg.optim_wrapper)
    if args.synthetic:
        batches = synthetic_batches(cfg, batch_size, pin=device.type == 'cuda')
        iters_per_epoch = args.warmup + args.iters
    else:
        from datasets import build_dataloader
        loader = build_dataloader(cfg.train_dataloader, seed=0, distributed=False,
                                  cfg_dir=Path(args.config).parent)
        batches = itertools.chain.from_iterable(itertools.repeat(loader))
        iters_per_epoch = len(loader)
    schedulers = build_schedulers(optim, cfg.get('param_scheduler'), iters_per_epoch,
                                  int(cfg.train_cfg['max_epochs']))
    ema = build_ema_from_hooks(model, cfg, logger)
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
        data='synthetic' if args.synthetic else 'train loader', ema=ema is not None,
        images_per_s=round(args.iters * batch_size / total, 1),
        ms_per_iter=round(total / args.iters * 1000, 1),
        data_wait_share=round(wait / total, 4), readbacks=stats.readbacks - readbacks_before,
        peak_memory_mb=round(torch.cuda.max_memory_allocated() / 2 ** 20) if device.type == 'cuda' else None)
    print(f"config: {args.config}  device: {device}  batch: {batch_size}  amp: {figures['amp'] or 'off'}  "
          f"EMA: {'on' if figures['ema'] else 'off'}  data: {figures['data']}")
    print(f"throughput: {figures['images_per_s']:.1f} img/s  ({figures['ms_per_iter']:.1f} ms/iter)")
    print(f"waiting for data: {100 * figures['data_wait_share']:.1f} % of the time")
    print(f"statistics read back {figures['readbacks']} times in {args.iters} iterations "
          f'(log_interval {log_interval})')
    print(f"peak GPU memory: {figures['peak_memory_mb'] if device.type == 'cuda' else 'n/a (cpu)'}"
          f"{' MB' if device.type == 'cuda' else ''}")
    if args.json:
        print(json.dumps(figures))


if __name__ == '__main__':
    run_main(main)
