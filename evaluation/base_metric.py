"""Metric base class: collect per-batch results, gather them across ranks, compute once, share."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch.distributed as dist

from utils.dist import broadcast_object, get_world_size, is_main_process


def gather_results(results: list, size: int | None = None) -> list:
    """All ranks' ``results`` in sample order (rank 0 gets them; other ranks get an empty list).

    Ranks hold interleaved shards (rank r has samples r, r + W, ...), as torch's DistributedSampler
    deals them out; they are re-interleaved and cut to ``size`` to drop the sampler's padding.
    Without an initialised process group this returns ``results[:size]``.
    """
    if get_world_size() == 1:
        return list(results) if size is None else list(results)[:size]
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(results))
    if dist.get_rank() != 0:
        return []
    ordered = []
    longest = max(len(p) for p in parts)
    for i in range(longest):
        ordered.extend(p[i] for p in parts if i < len(p))
    return ordered if size is None else ordered[:size]


class BaseMetric:
    """Accumulates results with :meth:`process` and turns them into numbers with :meth:`evaluate`.

    Subclasses implement ``process(preds, meta)`` (append to ``self.results``) and
    ``compute_metrics(results) -> dict``. ``prefix`` (default: the class's ``default_prefix``) is
    prepended to metric names as ``'prefix/name'``.
    """

    default_prefix: str | None = None

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or self.default_prefix
        self.results: list = []
        self._dataset_meta: dict | None = None

    @property
    def dataset_meta(self) -> dict | None:
        """The dataset's metainfo (``num_keypoints``, ``sigmas``, ...), set by the caller."""
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, meta: Mapping | None) -> None:
        self._dataset_meta = None if meta is None else dict(meta)

    def process(self, preds: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        """Store what :meth:`compute_metrics` needs from one batch."""
        raise NotImplementedError

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Numbers from all processed results (called on rank 0 only)."""
        raise NotImplementedError

    def evaluate(self, size: int | None = None) -> dict[str, float]:
        """Gather results from all ranks, compute on rank 0, share with all ranks, and reset.

        Args:
            size: number of samples in the dataset; results beyond it (distributed padding) are
                dropped. None keeps all.

        Returns:
            ``{'prefix/name': float}``.
        """
        results = gather_results(self.results, size)
        self.results = []
        metrics = None
        if is_main_process():
            raw = self.compute_metrics(results)
            metrics = {(f'{self.prefix}/{k}' if self.prefix else k): _to_float(v) for k, v in raw.items()}
        return broadcast_object(metrics) or {}


def _to_float(value: Any) -> float:
    return float(np.asarray(value))
