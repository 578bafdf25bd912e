"""Training-pipeline throughput (samples/s) on real images, in one process and with loader workers.

    python benchmarks/bench_pipeline.py CONFIG [--cfg-options ...] [--phase train|val] [--n 600]
        [--workers 2] [--batch-size 32] [--repeats 3] [--default-threads] [--batched [--device cuda]]
        [--data-dir DIR --ann-file FILE] [--json]

The config's ``train_dataloader.dataset`` (or ``val_dataloader.dataset``) is built as training builds it
(a CombinedDataset's members with their own pipelines, a RepeatDataset's repeated dataset) and its
samples run through its pipeline, repeated to ``--n`` samples; the figures are the median and best of
``--repeats`` timed runs after a warm-up. Point it at other data with ``--cfg-options`` (e.g.
``data_root=DIR/``), or time the dataset's pipeline on one COCO-format file with ``--data-dir DIR
[--ann-file FILE]`` (e.g. ``--data-dir ../shared/data/coco``, the 4-image sample). ``--batched`` also
times the device-side pipeline (``datasets.batched``): the loader side (read + draw + collate in one
process; with ``--workers`` workers, their CPU time per sample and the main process's CPU time to
receive the batches: together, the host work per sample of the input pipeline), and the
per-batch side of ``--batch-size`` samples on ``--device`` (``datasets.batched.profile``: ms per stage,
decode-only images/s, ATen operations per batch at that batch size and at twice it). ``--json`` adds one
JSON line with the figures (``benchmarks/gpu_check.py`` reads it).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import functools
import json
import statistics
import time

import cv2
import torch
from torch.utils.data import get_worker_info

from datasets import RepeatDataset, build_dataloader, build_dataset
from datasets.batched import DeviceTopdownPipeline, RawSampleDataset, collate_raw, dataset_recipes
from datasets.batched.buffer_pool import BufferPool, release
from datasets.batched.profile import count_ops, profile_pipeline
from utils import cli
from utils.config import load_config, require_sections


def dataset_config(cfg, phase: str, data_dir: str | None, ann_file: str) -> dict:
    """The dataset config to time: the config's ``{phase}_dataloader.dataset``, or with ``data_dir`` a
    CocoDataset on ``data_dir/ann_file`` with the pipelines of the config's dataset that owns them (a
    RepeatDataset passes them to the dataset it repeats)."""
    dataset = cfg[f'{phase}_dataloader']['dataset']
    if data_dir is None:
        return dataset
    while dataset.get('type') == 'RepeatDataset':
        dataset = dataset['dataset']
    pipelines = {k: dataset[k] for k in ('pipeline', 'pipeline_stage2') if dataset.get(k)}
    return dict(type='CocoDataset', ann_file=str(Path(data_dir) / ann_file), data_prefix=dict(img=data_dir),
                **pipelines)


def _single_process(dataset, n: int, repeats: int) -> tuple[list[float], list[float]]:
    """Samples per wall-clock second and per CPU second of this process, one of each per repeat."""
    for i in range(min(20, len(dataset))):  # warm-up: imports, codec tables, page cache
        dataset[(i, i)]
    wall, cpu = [], []
    for r in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for i in range(n):
            dataset[(i % len(dataset), r * n + i)]
        wall.append(n / (time.perf_counter() - start))
        cpu.append(n / (time.process_time() - start_cpu))
    return wall, cpu


def _with_workers(dataset, n: int, workers: int, batch_size: int) -> float:
    cfg = dict(batch_size=batch_size, num_workers=workers, persistent_workers=True,
               sampler=dict(type='DefaultSampler', shuffle=True))
    loader = build_dataloader(cfg, seed=0, dataset=dataset)
    it = iter(loader)
    next(it)  # workers started and warm
    count, start = 0, time.perf_counter()
    while count < n:
        try:
            count += len(next(it)['inputs'])
        except StopIteration:
            loader.set_epoch(loader.batch_sampler.sampler.epoch + 1)
            it = iter(loader)
    return count / (time.perf_counter() - start)


def _raw_batch(raw_ds: RawSampleDataset, batch_size: int, device: torch.device) -> dict:
    """The first ``batch_size`` samples as a raw batch, pinned for a CUDA device (as the loader pins it)."""
    raw = collate_raw(raw_ds.__getitems__([(i % len(raw_ds), i) for i in range(batch_size)]))
    if device.type == 'cuda':
        raw['buffer'] = raw['buffer'].pin_memory()
    return raw


def _timed_collate(samples: list, pool: BufferPool) -> dict:
    """collate_raw in a loader worker, as training runs it, stamped with the worker's id and CPU time."""
    raw = collate_raw(samples, pool)
    raw['worker_cpu'] = (get_worker_info().id, time.process_time())
    return raw


def _batched_workers(raw_ds: RawSampleDataset, batch_size: int, workers: int) -> tuple[float, float]:
    """CPU ms per sample of the loader workers (user + system time, each worker's from its first batch
    to its last) and of the main process receiving the batches (that thread's CPU time), one epoch
    of ``raw_ds`` loaded as training loads it (pooled buffers, each batch handed back once used)."""
    cfg = dict(batch_size=batch_size, num_workers=workers, sampler=dict(type='DefaultSampler'))
    loader = build_dataloader(cfg, seed=0, dataset=raw_ds,
                              collate_fn=functools.partial(_timed_collate, pool=BufferPool()))
    it = iter(loader)
    received, spent, stamps = 0, 0.0, {}
    while True:  # the CPU time of this thread only: receiving, not waiting for, the batches
        start = time.thread_time()
        raw = next(it, None)
        spent += time.thread_time() - start
        if raw is None:
            break
        worker, cpu = raw['worker_cpu']
        first, last, samples = stamps.get(worker, (cpu, cpu, -len(raw['jpeg'])))  # the first batch: warm-up
        stamps[worker] = (first, cpu, samples + len(raw['jpeg']))
        received += len(raw['jpeg'])
        release(raw)
    worker_samples = sum(samples for _, _, samples in stamps.values())
    worker_cpu = sum(last - first for first, last, _ in stamps.values())
    return 1000 * worker_cpu / max(worker_samples, 1), 1000 * spent / max(received, 1)


def _batched(dataset_cfg: dict, n: int, batch_size: int, repeats: int, workers: int,
             device: torch.device) -> dict:
    """Print the batched pipeline's loader-side ms per sample and its per-batch profile on ``device``;
    return the figures."""
    recipes = dataset_recipes(dataset_cfg)
    base = build_dataset(dataset_cfg)
    raw_ds = RawSampleDataset(RepeatDataset(base, times=max(1, -(-n // len(base)))), recipes)
    pipeline = DeviceTopdownPipeline(recipes, device)
    figures: dict = {'device': str(device), 'batch': batch_size}
    host = []
    for r in range(repeats + 1):  # the first is a warm-up
        start = time.process_time()
        for first in range(0, n, batch_size):  # as a DataLoader fetches and collates a batch
            keys = [(i % len(raw_ds), r * n + i) for i in range(first, first + batch_size)]
            collate_raw(raw_ds.__getitems__(keys))
        host.append(1000 * (time.process_time() - start) / n)
    print(f'batched pipeline, loader side (read + draw + collate, one process): {min(host[1:]):.3f} '
          f'ms/sample best, {statistics.median(host[1:]):.3f} median')
    figures['loader_ms_per_sample'] = round(statistics.median(host[1:]), 4)
    if workers > 0:
        worker_ms, receipt_ms = _batched_workers(raw_ds, batch_size, workers)
        print(f'batched pipeline, {workers} loader workers (their CPU time, user + system): {worker_ms:.3f} '
              f'ms/sample; receipt in the main process: {receipt_ms:.3f} CPU ms/sample; together (the '
              f'host work per sample): {worker_ms + receipt_ms:.3f} ms')
        figures.update(worker_ms_per_sample=round(worker_ms, 4), receipt_ms_per_sample=round(receipt_ms, 4))
    profile = profile_pipeline(pipeline, _raw_batch(raw_ds, batch_size, device), repeats)
    stages = ', '.join(f'{k} {v:.1f}' for k, v in profile['ms'].items())
    where = 'the CPU' if device.type == 'cpu' else device
    print(f'batched pipeline, per batch of {batch_size} on {where} (ms): {stages}; decode alone '
          f'{profile["decode_images_per_s"]:.0f} images/s')
    double = count_ops(pipeline, _raw_batch(raw_ds, 2 * batch_size, device)).ops
    print(f'batched pipeline, ATen operations per batch (views aside): {profile["aten_ops"]} at batch '
          f'{batch_size}, {double} at {2 * batch_size} ({(double - profile["aten_ops"]) / batch_size:.2f} '
          f'per added sample); most frequent: '
          + ', '.join(f'{name} {k}' for name, k in profile['top_ops']))
    figures.update(stage_ms={k: round(v, 3) for k, v in profile['ms'].items()}, jpegs=profile['jpegs'],
                   decode_images_per_s=round(profile['decode_images_per_s'], 1), aten_ops=profile['aten_ops'],
                   aten_ops_double_batch=double,
                   aten_ops_per_added_sample=round((double - profile['aten_ops']) / batch_size, 3))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(description=__doc__)
    cli.add_config_argument(parser, help='pose config file (its train_dataloader / val_dataloader dataset '
                                     'is timed)')
    parser.add_argument('--data-dir', help="time the dataset's pipeline on the images and ann file of this "
                                           "folder instead of the config's data")
    parser.add_argument('--ann-file', default='test_coco.json', help='COCO keypoint file in --data-dir')
    parser.add_argument('--phase', choices=('train', 'val'), default='train')
    parser.add_argument('--n', type=cli.positive_int, default=600, help='samples per timed run')
    parser.add_argument('--repeats', type=cli.positive_int, default=3)
    parser.add_argument('--workers', type=cli.non_negative_int, nargs='*', default=[2],
                        help='loader worker counts to time')
    parser.add_argument('--batch-size', type=cli.positive_int, default=32)
    parser.add_argument('--default-threads', action='store_true',
                        help='keep the OpenCV/torch thread defaults in the single-process run (default: '
                             'one thread each, as in a loader worker)')
    parser.add_argument('--batched', action='store_true',
                        help='also time the batched pipeline (loader side + per-batch side on --device)')
    parser.add_argument('--device', default='cpu', help='where --batched runs the per-batch side (cpu, cuda)')
    parser.add_argument('--json', action='store_true', help='also print the figures as one JSON line')
    cli.add_cfg_options_argument(parser)
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    require_sections(cfg, [f'{args.phase}_dataloader.dataset'], 'benchmarks/bench_pipeline.py')
    dataset_cfg = dataset_config(cfg, args.phase, args.data_dir, args.ann_file)
    base = build_dataset(dataset_cfg, cfg_dir=Path(args.config).resolve().parent,
                         cfg_path=f'{args.phase}_dataloader.dataset')
    dataset = RepeatDataset(base, times=max(1, -(-args.n // len(base))))
    if not args.default_threads:
        cv2.setNumThreads(0)
        torch.set_num_threads(1)
    device = torch.device(args.device)
    rates, cpu_rates = _single_process(dataset, args.n, args.repeats)
    source = Path(args.data_dir) / args.ann_file if args.data_dir else f'{args.phase}_dataloader.dataset'
    print(f'{args.phase} pipeline, {len(base)} instances of {source}, OpenCV threads '
          f'{cv2.getNumThreads()}, torch threads {torch.get_num_threads()}')
    print(f'single process: {statistics.median(rates):.1f} samples/s median, {max(rates):.1f} best '
          f'({1000 / statistics.median(rates):.2f} ms/sample); {statistics.median(cpu_rates):.1f} per CPU '
          f'second ({1000 / statistics.median(cpu_rates):.2f} CPU ms/sample, robust to a busy machine)')
    figures: dict = {'per_sample_ms': round(1000 / statistics.median(rates), 4),
                      'per_sample_cpu_ms': round(1000 / statistics.median(cpu_rates), 4)}
    for w in args.workers:
        if w > 0:
            rate = _with_workers(dataset, args.n, w, args.batch_size)
            print(f'{w} workers, batch {args.batch_size}: {rate:.1f} samples/s')
            figures[f'samples_per_s_{w}_workers'] = round(rate, 1)
    if args.batched:
        figures['batched'] = _batched(dataset_cfg, args.n, args.batch_size, args.repeats,
                                      max(args.workers, default=0), device)
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == '__main__':
    cli.run_main(main)
