"""The evaluation loop shared by val.py and train.py's validation."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from evaluation.base_metric import BaseMetric
from utils.dist import is_main_process


def evaluate_model(model: nn.Module, dataloader: Any, metric: BaseMetric | Sequence[BaseMetric],
                   device: str | torch.device | None = None, progress: bool = True,
                   desc: str = 'val') -> dict[str, float]:
    """Predict every batch of ``dataloader`` with ``model`` and score it with ``metric``.

    Args:
        model: a pose estimator with ``predict(inputs uint8 (B, 3, H, W), meta) -> {'keypoints' (B, K, 2)
            image px, 'keypoint_scores' (B, K)}`` (e.g. ``TopdownPoseEstimator``); a DDP/DataParallel
            wrapper is unwrapped. Flip test follows the model's ``test_cfg``.
        dataloader: yields ``pose_collate`` batches ``{'inputs', 'meta', ...}``; under torch.distributed
            each rank iterates its own shard (interleaved, as ``DefaultSampler`` deals them).
        metric: e.g. ``CocoMetric``, or several (their numbers are merged); a metric's ``dataset_meta``
            is set from ``dataloader.dataset.metainfo`` when unset. Metrics are reset afterwards.
        device: where the inputs go (default: the model's parameters' device).
        progress: show a tqdm bar (rank 0 only).
        desc: the bar's label.

    Returns:
        The metric's numbers (e.g. ``{'coco/AP': ..., ...}``), identical on every rank. The model's
        train/eval mode is restored.
    """
    net = model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model
    if device is None:
        device = next(net.parameters()).device
    metrics = [metric] if isinstance(metric, BaseMetric) else list(metric)
    dataset = getattr(dataloader, 'dataset', None)
    for m in metrics:
        if m.dataset_meta is None and dataset is not None and hasattr(dataset, 'metainfo'):
            m.dataset_meta = dataset.metainfo
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for batch in tqdm(dataloader, desc=desc, disable=not (progress and is_main_process()),
                              dynamic_ncols=True, leave=False):
                inputs = batch['inputs'].to(device, non_blocking=True)
                preds = net.predict(inputs, batch['meta'])
                for m in metrics:
                    m.process(preds, batch['meta'])
    finally:
        net.train(was_training)
    size = len(dataset) if dataset is not None else None
    return {name: value for m in metrics for name, value in m.evaluate(size=size).items()}
