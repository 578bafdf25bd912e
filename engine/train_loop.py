"""One training epoch: batches -> :func:`engine.train_step`, with logging once per log interval."""
from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from engine.batch import prepare_batch
from engine.rank_stop import RunStopped, agree_first_bad, peer_stop_message, stop_run
from engine.step_stats import NonFiniteLossError, StepStats
from engine.train_step import train_step
from utils.logger import RunLog


def _out_of_memory(run: RunLog, err: BaseException) -> str:
    return (f'CUDA out of memory at batch size {run.batch_size} per GPU ({run.world_size} GPUs): lower it, '
            f'e.g. --cfg-options train_dataloader.batch_size={max(run.batch_size // 2, 1)}, or use --amp. '
            f'({err})')


def train_one_epoch(run: RunLog, train_model: nn.Module, loader: Any, optim: Any, schedulers: list, ema: Any,
                    epoch: int, prepare: Callable[[dict], dict] | None = None) -> None:
    """One pass over ``loader`` with :func:`engine.train_step`, logging every ``run.log_interval``
    iterations and at the end of the epoch.

    Losses stay on the device until a log line: there, one read-back of the window, then (with several
    ranks) one all-gather so that a NaN/inf loss on any rank stops every rank with the same
    :class:`NonFiniteLossError`. An exception on one rank (e.g. out of memory) stops every rank with
    that rank's message (:mod:`engine.rank_stop`).

    Args:
        prepare: moves a collated batch to the device (default :func:`engine.prepare_batch`, with
            channels_last on CUDA).
    """
    device = run.device
    prepare = prepare or functools.partial(prepare_batch, device=device, channels_last=device.type == 'cuda')
    iters_per_epoch = len(loader)
    it = epoch * iters_per_epoch
    stats = StepStats(run.log_interval)
    train_model.train()
    end = time.perf_counter()
    data_time = step_time = 0.0
    batches = iter(run.progress(loader, epoch))  # next() inside the guard below: loader errors stop all ranks
    for i in range(iters_per_epoch):
        lr = optim.param_groups[0]['lr']
        try:
            batch = next(batches)
            data_time += time.perf_counter() - end
            train_step(train_model, optim, prepare(batch), it, stats, ema, schedulers)
        except torch.OutOfMemoryError as err:
            stop_run(_out_of_memory(run, err))
        except Exception as err:
            peer = peer_stop_message()
            if peer is not None:  # another rank stopped first: this error is only the broken collective
                raise RunStopped(peer) from None
            if run.world_size > 1:
                stop_run(f'{type(err).__name__}: {err}')
            raise
        it += 1
        run.iters += 1
        step_time += time.perf_counter() - end
        end = time.perf_counter()
        if (i + 1) % run.log_interval == 0 or i + 1 == iters_per_epoch:
            means = stats.means()
            stopped = agree_first_bad(stats.first_bad, stats.names, device)
            if stopped is not None:
                raise NonFiniteLossError(stopped)
            n = i % run.log_interval + 1
            run.log_train(epoch, i, iters_per_epoch, it, lr, means, step_time / n, data_time / n)
            data_time = step_time = 0.0
    next(batches, None)  # the loader is exhausted: this ends the progress bar
