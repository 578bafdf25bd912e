"""One training iteration, the single step that train.py, benchmarks/bench_train.py and the tests run:
the batch moved to the device (:func:`prepare_batch`), the module DDP wraps (:class:`LossModel`), forward +
loss + backward + optimizer step (:func:`train_step`), and the loss terms kept on the device between log
lines (:class:`StepStats`)."""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from utils.errors import ReportedError


def prepare_batch(batch: Mapping[str, Any], device: torch.device,
                  channels_last: bool = False) -> dict[str, Any]:
    """``{'inputs': uint8 (B, 3, H, W), 'targets': {name: (B, ...)}}`` on ``device``.

    Copies are ``non_blocking`` (asynchronous from pinned host memory on CUDA: the copy overlaps the
    previous step). ``channels_last`` gives the images the memory layout the CUDA convolutions prefer.
    Normalisation happens later, on the device, in the model's data preprocessor.
    """
    inputs = batch['inputs'].to(device, non_blocking=True)
    if channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    targets = {k: v.to(device, non_blocking=True) for k, v in batch['targets'].items()}
    return {'inputs': inputs, 'targets': targets}


class LossModel(nn.Module):
    """``forward(inputs, targets) -> estimator.loss(...)``: DDP must wrap a forward that computes the
    loss so that its gradient all-reduce hooks fire."""

    def __init__(self, estimator: nn.Module) -> None:
        super().__init__()
        self.estimator = estimator

    def forward(self, inputs: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """uint8 (B, 3, H, W) BGR images and (B, ...) targets -> the estimator's loss dict."""
        return self.estimator.loss(inputs, targets)


def estimator_of(train_model: nn.Module) -> nn.Module:
    """The pose estimator inside a :class:`LossModel`, DDP-wrapped or not."""
    return getattr(train_model, 'module', train_model).estimator


class NonFiniteLossError(ReportedError, RuntimeError):
    """A loss term became NaN or infinite; training stops without writing a checkpoint."""


def non_finite_message(it: int, name: str, value: float, rank: int | None = None) -> str:
    """The stop message for loss term ``name`` = ``value`` at 0-based global iteration ``it``."""
    where = f' (rank {rank})' if rank is not None else ''
    return (f'non-finite loss at iteration {it + 1}: {name} = {value}{where}. The last checkpoint on disk is '
            'left as it was; lower the lr or check the data of this iteration.')


class StepStats:
    """A window of per-iteration values on the device, read back to the host once per window.

    Each :meth:`push` writes one row (the iteration's 0-d loss terms, metrics and grad norm) into a
    ``(capacity, terms)`` float32 buffer on the values' device: one small copy, no host read-back.
    :meth:`resolve` (called by :meth:`means`, normally once per log interval) copies the filled rows to
    the host in one transfer, so the non-finite check stays exact: :attr:`first_bad` names the first
    iteration and loss term that was NaN/inf even when that is noticed a few iterations later.

    Args:
        capacity: rows kept on the device (the log interval); a full buffer is read back on the next push.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f'StepStats capacity must be >= 1, got {capacity}')
        self.capacity = capacity
        self.names: list[str] = []
        self.buffer: torch.Tensor | None = None
        self.rows: list[tuple[int, bool]] = []  # (iteration, has a grad norm) of each filled row
        self.window: dict[str, list[float]] = defaultdict(list)
        self.first_bad: tuple[int, str, float] | None = None
        self.readbacks = 0

    def push(self, it: int, losses: Mapping[str, torch.Tensor], grad_norm: torch.Tensor | None) -> None:
        """Keep iteration ``it``'s 0-d tensors (``losses``: loss terms and metrics; ``grad_norm`` or None
        when no optimizer step was taken) on their device."""
        names = list(losses) + ['grad_norm']
        values = [v.detach().float().reshape(()) for v in losses.values()]
        if grad_norm is not None:
            values.append(grad_norm.detach().float().reshape(()))
        if names != self.names or len(self.rows) == self.capacity:
            self.resolve()
        if names != self.names or self.buffer is None or self.buffer.device != values[0].device:
            self.names = names
            self.buffer = torch.empty(self.capacity, len(names), device=values[0].device)
        self.buffer[len(self.rows), :len(values)] = torch.stack(values)
        self.rows.append((it, grad_norm is not None))

    def resolve(self) -> None:
        """Copy the pending rows to the host (one transfer) and record the first non-finite loss term."""
        if not self.rows:
            return
        host = self.buffer[:len(self.rows)].cpu().tolist()
        self.readbacks += 1
        for (it, has_grad_norm), row in zip(self.rows, host):
            for name, value in zip(self.names, row):
                if name == 'grad_norm' and not has_grad_norm:
                    continue
                if self.first_bad is None and name.startswith('loss') and not math.isfinite(value):
                    self.first_bad = (it, name, value)
                self.window[name].append(value)
        self.rows.clear()

    def means(self) -> dict[str, float]:
        """Mean of each term over the iterations since the last call (window then cleared)."""
        self.resolve()
        out = {k: sum(v) / len(v) for k, v in self.window.items() if v}
        self.window.clear()
        return out


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
