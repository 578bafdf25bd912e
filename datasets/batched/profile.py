"""Where the device pipeline's time goes: per-stage milliseconds per batch, decode-only images/s and
the number of ATen operations (kernel launches on a GPU) one batch takes.

Used by ``benchmarks/bench_pipeline.py --batched`` on the CPU and by the GPU check on CUDA, so that
a missed throughput target says which stage missed it.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from datasets.batched.jpeg_decode import size_groups
from datasets.batched.pipeline import DeviceTopdownPipeline
from datasets.batched.raw_batch import RawBatch

STAGES = ('decode', 'upload', 'geometry', 'canvas', 'warp', 'photometric', 'targets')


class OpCounter(TorchDispatchMode):
    """Counts the ATen operations run inside it: ``ops`` (not views: each is a kernel launch on a GPU),
    ``views`` and ``by_name``."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = self.views = 0
        self.by_name: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func.is_view:
            self.views += 1
        else:
            self.ops += 1
            self.by_name[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def count_ops(pipeline: DeviceTopdownPipeline, raw: RawBatch) -> OpCounter:
    """The ATen operations of one ``pipeline(raw)`` call (the JPEG decode included)."""
    with OpCounter() as counter:
        pipeline(raw)
    return counter


def _timer(device: torch.device) -> Callable[[], float]:
    def now() -> float:
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        return time.perf_counter()
    return now


def time_stages(pipeline: DeviceTopdownPipeline, raw: RawBatch) -> dict[str, float]:
    """Milliseconds of each of :data:`STAGES` for one batch, run one after the other (waiting for the
    device between stages), plus ``total`` (the pipeline run in one go). ``canvas`` is the float copy
    of each same-size group of images, ``warp`` the rest of the crop."""
    now = _timer(pipeline.device)
    recipe = pipeline.recipes[raw['stage']]
    marks = [now()]
    raw, decoded = pipeline.decode(raw)
    marks.append(now())
    buffer, fields = pipeline.upload(raw)
    marks.append(now())
    geo = pipeline.geometry(recipe, fields)
    marks.append(now())
    images = pipeline.images(raw, buffer, decoded)
    for members in size_groups(images, pipeline.warp_budget):
        pipeline.canvas(images, members)
    marks.append(now())
    crops = pipeline.crop(recipe, images, fields, geo)
    marks.append(now())
    crops = pipeline.augment(recipe, raw, fields, crops)
    marks.append(now())
    pipeline.targets(recipe, fields, geo)
    pipeline.meta(recipe, raw, fields, geo)
    marks.append(now())
    ms = {stage: 1000 * (b - a) for stage, a, b in zip(STAGES, marks, marks[1:])}
    ms['warp'] -= ms['canvas']  # crop() makes the canvases again
    start = now()
    pipeline(raw)
    ms['total'] = 1000 * (now() - start)
    return ms


def profile_pipeline(pipeline: DeviceTopdownPipeline, raw: RawBatch, repeats: int = 3) -> dict[str, Any]:
    """Figures of the device pipeline on one raw batch (reused: the pipeline does not consume it unless
    it has to replace undecodable images).

    Returns ``batch`` (samples), ``jpegs`` (decoded on the device), ``ms`` {stage: best of
    ``repeats`` ms per batch} (see :func:`time_stages`), ``decode_images_per_s`` (the device decoder
    alone), ``aten_ops`` and ``aten_views`` per batch (:func:`count_ops`) and ``top_ops`` (the most
    frequent operations).
    """
    pipeline(raw)  # warm-up: lazy initialisation, caches
    runs = [time_stages(pipeline, raw) for _ in range(repeats)]
    ms = {k: min(r[k] for r in runs) for k in runs[0]}
    counter = count_ops(pipeline, raw)
    jpegs = sum(span is not None for span in raw['jpeg'])
    return {'batch': len(raw['jpeg']), 'jpegs': jpegs, 'ms': ms,
            'decode_images_per_s': jpegs / (ms['decode'] / 1000) if ms['decode'] > 0 else float('nan'),
            'aten_ops': counter.ops, 'aten_views': counter.views, 'top_ops': counter.by_name.most_common(8)}
