"""One training iteration: the single step that train.py, benchmarks/bench_train.py and the tests run."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from engine.loss_model import estimator_of
from engine.step_stats import StepStats


def total_loss(losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Sum of the ``loss*`` entries of a loss dict (0-d); the other entries are metrics."""
    return sum(v for k, v in losses.items() if k.startswith('loss'))


def train_step(train_model: nn.Module, optim: Any, batch: Mapping[str, Any], it: int,
               stats: StepStats | None = None, ema: Any = None, schedulers: Sequence[Any] = ()
               ) -> dict[str, torch.Tensor]:
    """Forward + loss under the optimizer wrapper's context (autocast, DDP ``no_sync`` inside an
    accumulation group), backward, clipping, optimizer step, the iteration-based lr schedulers, the EMA
    update and the device-side statistics of iteration ``it`` (0-based, global).

    Args:
        train_model: a :class:`engine.LossModel`, possibly DDP-wrapped.
        optim: an ``optim.OptimWrapper`` (or ``AmpOptimWrapper``).
        batch: a prepared batch (:func:`engine.prepare_batch`): uint8 ``inputs`` (B, 3, H, W) and
            ``targets`` on the model's device.
        stats: where the loss terms, metrics and grad norm are kept (on the device) for logging.
        ema: an ``optim.ExponentialMovingAverage`` of the estimator, or None.
        schedulers: lr schedulers; those with ``by_epoch=False`` are stepped here.

    Returns:
        The loss dict (0-d tensors on the device). Nothing is read back to the host: the step never
        waits for the device.
    """
    with optim.optim_context(train_model):
        losses = train_model(batch['inputs'], batch['targets'])
    grad_norm = optim.update_params(total_loss(losses))
    if ema is not None:
        ema.update_parameters(estimator_of(train_model))
    for scheduler in schedulers:
        if not scheduler.by_epoch:
            scheduler.step()
    if stats is not None:
        stats.push(it, losses, grad_norm)
    return losses
