"""One training epoch (:func:`train_one_epoch`), and stopping every rank of a data-parallel run together.

Stopping every rank with one message has two cases. A NaN/inf loss lets every rank finish its
iterations, so the ranks agree at the next log line (:func:`agree_first_bad`: one small all-gather per log
interval) and all raise the same error there. An exception on one rank (out of memory, a bad file) leaves
the other ranks inside a gradient all-reduce that can never complete; that rank leaves its message in the
process group's key-value store and exits (:func:`stop_run`, :func:`utils.dist.announce_stop`). The
others read it from a watcher thread (:func:`watch_for_peer_stop`), which ends a rank stuck for good (NCCL
collectives do not fail when a peer leaves) and reads the message while its host is alive (the store lives
in rank 0's process unless torchrun started the run); or their all-reduce fails (gloo) and they report the
message instead of their own connection error (:func:`utils.dist.peer_stopped`).
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import nn

from engine.report import RunReport, TrainWindow
from engine.step import NonFiniteLossError, StepStats, non_finite_message, prepare_batch, train_step
from utils.dist import (
    RunStopped,
    acknowledge_stop,
    announce_stop,
    get_world_size,
    is_distributed,
    leaving,
    mark_same_on_every_rank,
    peer_stop_message,
    peer_stopped,
    several_ranks,
)

__all__ = ['RunStopped', 'agree_first_bad', 'stop_run', 'train_one_epoch', 'watch_for_peer_stop']


def train_one_epoch(train_model: nn.Module, optim: Any, loader: Any, epoch: int, report: RunReport, *,
                    device: torch.device, log_interval: int, batch_size: int, ema: Any = None,
                    schedulers: Sequence[Any] = ()) -> None:
    """One pass over ``loader`` (0-based ``epoch``) with :func:`engine.train_step`, reported to ``report``
    every ``log_interval`` iterations and at the end of the epoch.

    The loop owns the iteration counters and timings; the reporter gets them per log line
    (:class:`engine.report.TrainWindow`). Losses stay on the device until a log line: there, one read-back
    of the window, then (with several ranks) one all-gather so that a NaN/inf loss on any rank stops every
    rank with the same :class:`NonFiniteLossError`. An exception on one rank (e.g. out of memory) stops
    every rank with that rank's message (:func:`stop_run`).

    Args:
        train_model: a :class:`engine.LossModel`, possibly DDP-wrapped; optim: its ``OptimWrapper``.
        loader: yields ``pose_collate`` batches (host or device); ``len(loader)`` iterations per epoch.
        device: the training device (batches go there, channels_last on CUDA).
        batch_size: per process, for the out-of-memory message.
        ema, schedulers: as :func:`engine.train_step`.
    """
    iters_per_epoch = len(loader)
    world_size = get_world_size()
    it = epoch * iters_per_epoch
    stats = StepStats(log_interval)
    train_model.train()
    report.begin_epoch(epoch, iters_per_epoch)
    end = time.perf_counter()
    data_time = step_time = 0.0
    batches = iter(loader)  # next() inside the guard below: loader errors stop all ranks
    for i in range(iters_per_epoch):
        lr = optim.param_groups[0]['lr']
        try:
            batch = next(batches)
            data_time += time.perf_counter() - end
            if i == 0:
                report.first_batch(batch, loader.dataset.metainfo, epoch)
            train_step(train_model, optim, prepare_batch(batch, device, channels_last=device.type == 'cuda'),
                       it, stats, ema, schedulers)
        except torch.OutOfMemoryError as err:
            stop_run(_out_of_memory(err, batch_size, world_size))
        except Exception as err:
            stopped = peer_stopped()
            if stopped is not None:  # another rank stopped first: this error is only the broken collective
                raise stopped from None
            if world_size > 1:
                stop_run(f'{type(err).__name__}: {err}')
            raise
        it += 1
        report.iteration_done()
        step_time += time.perf_counter() - end
        end = time.perf_counter()
        if (i + 1) % log_interval == 0 or i + 1 == iters_per_epoch:
            means = stats.means()
            stopped = agree_first_bad(stats.first_bad, stats.names, device)
            if stopped is not None:  # every rank raises it: one line (utils.cli.run_main)
                raise mark_same_on_every_rank(NonFiniteLossError(stopped))
            n = i % log_interval + 1
            memory = int(torch.cuda.max_memory_allocated(device) / 2 ** 20) if device.type == 'cuda' else None
            report.log_train(TrainWindow(epoch, i, iters_per_epoch, n, lr, means, step_time / n,
                                         data_time / n, memory))
            data_time = step_time = 0.0
    report.end_training()


def _out_of_memory(err: BaseException, batch_size: int, world_size: int) -> str:
    return (f'CUDA out of memory at batch size {batch_size} per GPU ({world_size} GPUs): lower it, '
            f'e.g. --cfg-options train_dataloader.batch_size={max(batch_size // 2, 1)}, or use --amp. '
            f'({err})')


def stop_run(message: str) -> NoReturn:
    """Stop this rank with :class:`RunStopped`, first telling the other ranks (if any) why
    (:func:`utils.dist.announce_stop`)."""
    raise RunStopped(announce_stop(message))


def agree_first_bad(first_bad: tuple[int, str, float] | None, names: list[str],
                    device: torch.device) -> str | None:
    """The non-finite-loss message every rank agrees on, or None when no rank saw one.

    ``first_bad`` is this rank's ``(iteration, term, value)`` (:attr:`StepStats.first_bad`); ``names``
    the terms (the same on every rank). With several ranks, one all-gather of three numbers per rank on
    ``device``; the earliest iteration wins (the lowest rank on a tie).
    """
    world_size = get_world_size() if is_distributed() else 1
    if world_size == 1:
        return None if first_bad is None else non_finite_message(*first_bad)
    it, name, value = first_bad if first_bad is not None else (-1, names[0], 0.0)
    record = torch.tensor([it, names.index(name), value], dtype=torch.float64).to(device)
    gathered = [torch.empty_like(record) for _ in range(world_size)]
    dist.all_gather(gathered, record)
    bad = [(int(r[0]), rank, int(r[1]), float(r[2]))
           for rank, r in enumerate(torch.stack(gathered).cpu().tolist()) if r[0] >= 0]
    if not bad:
        return None
    it, rank, term, value = min(bad)
    return non_finite_message(it, names[term], value, rank)


def watch_for_peer_stop(on_stop: Callable[[str], None], interval: float = 1.0, grace: float = 3.0,
                        exit_process: Callable[[int], object] = os._exit) -> threading.Event:
    """Poll the store every ``interval`` seconds from a daemon thread for another rank's stop message
    (:func:`utils.dist.peer_stop_message`; a store that is gone counts as its host's stop). On one, read it
    (so it outlives rank 0's store), acknowledge it, and give this rank's main thread ``grace`` seconds
    to stop by itself (a gloo collective fails when its peer leaves); if it has not, call
    ``on_stop(message)`` (report it) and ``exit_process(1)``: this rank is blocked for good in a
    collective (NCCL), so it cannot unwind normally. Returns an event that ends the watch; the watch
    also ends when this rank stops by itself (:func:`utils.dist.leaving`). Does nothing outside a
    process group of several ranks."""
    done = threading.Event()
    if not several_ranks():
        return done

    def watch() -> None:
        while not done.wait(interval) and not leaving():
            message = peer_stop_message()
            if message is None:
                continue
            acknowledge_stop()
            if done.wait(grace) or leaving():
                return
            on_stop(message)
            exit_process(1)
            return

    threading.Thread(target=watch, name='peer-stop-watch', daemon=True).start()
    return done
