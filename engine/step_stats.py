"""Loss terms, metrics and grad norms of the training iterations, kept on the device between log lines."""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping

import torch

from utils.errors import ReportedError


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
