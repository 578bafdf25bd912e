"""Reporting a training run. The loop owns the iteration counters and times its iterations; it hands
:class:`RunReport` what it measured (a :class:`TrainWindow` per log line, the metrics of a validation, the
pictures), and the reporter only reports:

- on the console, a 2-line header (data, model), then on a terminal a progress bar per epoch (loss, lr,
  ETA) with messages above it, or, piped, the log lines every ``log_interval`` iterations; one metrics
  line per validation; a per-epoch table at the end (:func:`summary_table`);
- in the work dir (main process): train.log (through the project logger), ``tensorboard/``, the run
  record (results.csv, scalars.json: :mod:`engine.record`), ``results.png`` (loss, lr, AP and AR per
  epoch) and ``vis/``: ``train_batch.jpg`` (the run's first batch as the network gets it),
  ``val_pred_last.jpg`` and ``val_pred_best.jpg`` (the latest and the best validation's predictions;
  every validation's are in TensorBoard).
"""
from __future__ import annotations

import datetime
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from engine.record import RunRecord, summary_table
from utils.logger import FILE_ONLY, plural
from utils.output_files import write_image
from visualization.batch_picture import train_batch_picture
from visualization.curves import plot_panels, results_panels

RESULTS_PNG = 'results.png'
VIS_DIR = 'vis'  # the work dir's pictures

def format_eta(seconds: float) -> str:
    """``seconds`` as ``H:MM:SS`` (days shown as ``D days, H:MM:SS``)."""
    return str(datetime.timedelta(seconds=int(max(seconds, 0))))


@dataclass(frozen=True)
class TrainWindow:
    """What the training loop measured over the iterations since its previous log line.

    Attributes:
        epoch: 0-based epoch; iteration: 0-based index in the epoch of the window's last iteration.
        iters_per_epoch: iterations of one epoch on this process.
        size: iterations in the window (``log_interval``, or fewer at the end of an epoch).
        lr: the lr of the window's last iteration; means: the window's mean loss terms and metrics.
        step_time, data_time: seconds per iteration (the whole iteration, waiting for the batch).
        memory_mb: the device's peak allocated memory in MiB (CUDA), else None.
    """

    epoch: int
    iteration: int
    iters_per_epoch: int
    size: int
    lr: float
    means: Mapping[str, float]
    step_time: float
    data_time: float
    memory_mb: int | None = None

    @property
    def global_iter(self) -> int:
        """The window's last iteration, global and 1-based (as in scalars.json)."""
        return self.epoch * self.iters_per_epoch + self.iteration + 1


class RunReport:
    """The console, log and work-dir reporting of one training run (see the module docstring).

    Args:
        logger: the project logger (``utils.logger.get_logger``: console and train.log).
        work_dir: where the files go; None on the processes that write none (all but rank 0).
        max_epochs: epochs of the run; start_epoch: epochs finished before this process started (resume).
        show_bar: a progress bar per epoch instead of iteration lines on the console (a terminal, rank 0).
    """

    def __init__(self, logger: logging.Logger, work_dir: Path | None, max_epochs: int, start_epoch: int = 0,
                 show_bar: bool = False) -> None:
        self.logger, self.work_dir, self.show_bar = logger, work_dir, show_bar
        self.max_epochs, self.start_epoch = max_epochs, start_epoch
        self.writer = SummaryWriter(str(work_dir / 'tensorboard')) if work_dir is not None else None
        self.record = RunRecord(work_dir, start_epoch) if work_dir is not None else None
        self.start = self.epoch_start = self.val_start = time.perf_counter()
        self.bar: tqdm | None = None
        self.batch_drawn = False
        self.sums: dict[str, float] = {}
        self.count, self.lr = 0, float('nan')
        self.metrics: dict[str, float] = {}

    def log_header(self, model: torch.nn.Module, *, train_size: int, iters_per_epoch: int, batch_size: int,
                   world_size: int, val_size: int) -> None:
        """Two console lines: the data (sizes in instances, iterations per epoch, the batch size per
        process) and the model's size."""
        procs = f' x {world_size} processes' if world_size > 1 else ''
        self.logger.info('data: train %s, %s/epoch (batch %d%s), val %s; %s',
                         plural(train_size, 'instance'), plural(iters_per_epoch, 'iteration'), batch_size,
                         procs, plural(val_size, 'instance'), plural(self.max_epochs, 'epoch'))
        in_loss = sum(p.numel() for name, p in model.named_parameters() if 'loss_module.' in name)
        total = sum(p.numel() for p in model.parameters()) - in_loss
        self.logger.info('model: %s, %s parameters%s', type(model).__name__, f'{total:,}',
                         f' (+{in_loss:,} in the loss)' if in_loss else '')

    def begin_epoch(self, epoch: int, iters_per_epoch: int) -> None:
        """0-based ``epoch`` starts training: its statistics start and its progress bar opens."""
        self.epoch_start, self.sums, self.count, self.metrics = time.perf_counter(), {}, 0, {}
        self.bar = tqdm(total=iters_per_epoch, disable=not self.show_bar, dynamic_ncols=True,
                        desc=f'Epoch {epoch + 1}/{self.max_epochs}', file=sys.stdout)

    def first_batch(self, batch: Mapping[str, Any], dataset_meta: Mapping[str, Any], epoch: int) -> None:
        """The first batch of an epoch (a ``pose_collate`` batch); the run's very first is drawn as
        ``vis/train_batch.jpg`` and to TensorBoard (``train/batch``)."""
        if self.batch_drawn or self.work_dir is None:
            return
        self.batch_drawn = True
        self._picture('train_batch.jpg', train_batch_picture(batch, dataset_meta), epoch + 1, 'train/batch')

    def iteration_done(self) -> None:
        """One more iteration of the epoch: advances the progress bar."""
        if self.bar is not None:
            self.bar.update(1)

    def log_train(self, window: TrainWindow) -> None:
        """The log line closing a window of iterations: train.log (and the console when piped), the bar's
        loss / lr / ETA, TensorBoard, scalars.json; the window counts into the epoch's means."""
        it = window.global_iter
        done = it - self.start_epoch * window.iters_per_epoch  # iterations run by this process
        left = self.max_epochs * window.iters_per_epoch - it
        eta = (time.perf_counter() - self.start) / max(done, 1) * left
        means = dict(window.means)
        loss = sum(v for k, v in means.items() if k.startswith('loss'))
        values = '  '.join(f'{k}: {v:.4f}' for k, v in {'loss': loss, **means}.items())
        memory = window.memory_mb
        self.logger.info('Epoch(train) [%d][%d/%d]  lr: %.4e  eta: %s  time: %.4f  data_time: %.4f%s  %s',
                         window.epoch + 1, window.iteration + 1, window.iters_per_epoch, window.lr,
                         format_eta(eta), window.step_time, window.data_time,
                         f'  memory: {memory} MB' if memory is not None else '', values,
                         extra=FILE_ONLY if self.show_bar else None)
        if self.bar is not None:
            self.bar.set_postfix_str(f'loss {loss:.4f}  lr {window.lr:.2e}  ETA {format_eta(eta)}',
                                     refresh=False)
        for k, v in {'loss': loss, **means}.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * window.size
        self.count, self.lr = self.count + window.size, window.lr
        if self.writer is not None:
            self.writer.add_scalar('train/lr', window.lr, it)
            for k, v in {'loss': loss, **means}.items():
                self.writer.add_scalar(f'train/{k}', v, it)
        if self.record is not None:
            scalars = {'lr': window.lr, 'data_time': window.data_time, 'loss': loss, **means,
                       'time': window.step_time}
            self.record.log_train(scalars, window.epoch + 1, it, memory)
        self.val_start = time.perf_counter()

    def end_training(self) -> None:
        """The epoch's training iterations are over: the progress bar closes."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def log_metrics(self, metrics: Mapping[str, float], epoch: int, val_iters: int) -> None:
        """The validation after 0-based ``epoch`` (``val_iters`` iterations): one line, TensorBoard,
        scalars.json."""
        seconds = (time.perf_counter() - self.val_start) / max(val_iters, 1)
        values = '  '.join(f'{k}: {v:.4f}' for k, v in metrics.items())
        self.logger.info('Epoch(val) [%d]  %s', epoch + 1, values)
        self.metrics = {k: float(v) for k, v in metrics.items()}
        if self.writer is not None:
            for k, v in metrics.items():
                self.writer.add_scalar(f'val/{k}', v, epoch + 1)
        if self.record is not None:
            self.record.log_val(self.metrics, epoch + 1, seconds)

    def log_predictions(self, img: np.ndarray | None, epoch: int, best: bool) -> None:
        """The validation's prediction mosaic (BGR; nothing for None) after 0-based ``epoch``:
        ``vis/val_pred_last.jpg``, also ``vis/val_pred_best.jpg`` when the epoch is the best so far, and
        TensorBoard (``val/predictions``, every validation)."""
        self._picture('val_pred_last.jpg', img, epoch + 1, 'val/predictions')
        if best and img is not None and self.work_dir is not None:
            write_image(self.work_dir / VIS_DIR / 'val_pred_best.jpg', img)

    def _picture(self, name: str, img: np.ndarray | None, step: int, tag: str) -> None:
        """Write a BGR picture as ``work_dir/vis/name`` and to TensorBoard under ``tag`` at ``step``."""
        if img is None or self.work_dir is None:
            return
        write_image(self.work_dir / VIS_DIR / name, img)
        if self.writer is not None:
            self.writer.add_image(tag, cv2.cvtColor(img, cv2.COLOR_BGR2RGB), step, dataformats='HWC')

    def end_epoch(self, epoch: int) -> None:
        """Add 0-based ``epoch``'s row to results.csv (lr at its end, mean losses, metrics, seconds) and
        redraw results.png when it validated."""
        if self.record is None:
            return
        row = {'epoch': epoch + 1, 'lr': self.lr, **{k: v / max(self.count, 1) for k, v in self.sums.items()},
               **self.metrics, 'time': time.perf_counter() - self.epoch_start}
        self.record.add_epoch(row)
        if self.metrics:
            plot_panels(results_panels(self.record.rows), self.work_dir / RESULTS_PNG, cols=2)

    def log_summary(self, best_key: str | None, rule: str) -> None:
        """The per-epoch table of results.csv with the best epoch marked (main process)."""
        if self.record is not None and self.record.rows:
            self.logger.info('Results per epoch (%s):\n%s', self.record.csv_path,
                             summary_table(self.record.rows, best_key, rule))

    def close(self) -> None:
        """Close the progress bar and TensorBoard's files."""
        self.end_training()
        if self.writer is not None:
            self.writer.close()
