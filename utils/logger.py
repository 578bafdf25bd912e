"""Run logging: a text logger (console + file, main process only; console lines printed above
progress bars), environment report, and :class:`RunLog`, the reporting of one training run: a progress
bar per epoch, log lines, TensorBoard, results.csv / scalars.json / results.png and pictures."""
from __future__ import annotations

import datetime
import logging
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from utils.curves import render_panels
from utils.output_files import write_image
from utils.run_record import RunRecord, results_panels, summary_table

LOGGER_NAME = 'mmpose_clean'
_FORMAT = '%(asctime)s - %(levelname)s - %(message)s'
FILE_ONLY = {'file_only': True}  # ``logger.info(..., extra=FILE_ONLY)``: the log file, not the console


class _ConsoleHandler(logging.StreamHandler):
    """Console lines written through ``tqdm.write``, so that they appear above an active progress bar;
    records logged with ``extra=FILE_ONLY`` are skipped."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, 'file_only', False):
            return
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging must not raise; report it as logging's own handlers do
            self.handleError(record)


class _ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS message``; warnings and errors name their level."""

    def __init__(self) -> None:
        super().__init__('%(asctime)s %(message)s', datefmt='%H:%M:%S')
        self.loud = logging.Formatter('%(asctime)s %(levelname)s: %(message)s', datefmt='%H:%M:%S')

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno >= logging.WARNING:
            return self.loud.format(record)
        return super().format(record)


def get_logger(log_file: str | Path | None = None, rank: int = 0,
               level: int = logging.INFO) -> logging.Logger:
    """The project logger; rank 0 logs ``level`` and above to stdout (short ``HH:MM:SS`` lines, above any
    tqdm bar) and ``log_file`` (dated lines), other ranks only errors to stderr. Records logged with
    ``extra=FILE_ONLY`` go to the file only. Calling it again replaces the handlers (one per process)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(_FORMAT, datefmt='%Y/%m/%d %H:%M:%S')
    if rank == 0:
        console: logging.Handler = _ConsoleHandler(sys.stdout)
        logger.setLevel(level)
    else:
        console = _ConsoleHandler(sys.stderr)
        logger.setLevel(logging.ERROR)
    console.setFormatter(_ConsoleFormatter())
    logger.addHandler(console)
    if log_file is not None and rank == 0:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, mode='a', encoding='utf-8')
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    return logger


def collect_env() -> str:
    """Multi-line description of the software and hardware: Python, torch, CUDA, GPUs, numpy, OpenCV."""
    lines = [f'Python: {sys.version.split()[0]} ({platform.platform()})',
             f'PyTorch: {torch.__version__}', f'NumPy: {np.__version__}']
    try:
        import cv2
        lines.append(f'OpenCV: {cv2.__version__}')
    except ImportError:
        lines.append('OpenCV: not installed')
    lines.append(f'CPU threads (torch): {torch.get_num_threads()}')
    if torch.cuda.is_available():
        lines.append(f'CUDA: {torch.version.cuda}, cuDNN: {torch.backends.cudnn.version()}')
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            lines.append(f'GPU {i}: {props.name}, {props.total_memory / 2 ** 30:.1f} GiB')
    else:
        lines.append('CUDA: not available')
    return '\n'.join(lines)


def format_eta(seconds: float) -> str:
    """``seconds`` as ``H:MM:SS`` (days shown as ``D days, H:MM:SS``)."""
    return str(datetime.timedelta(seconds=int(max(seconds, 0))))


class RunLog:
    """Reporting of one training run and its iteration timing: a progress bar per epoch (on a terminal,
    main process) whose postfix carries loss, lr and ETA, with log lines above it; off a terminal plain
    log lines every ``log_interval`` iterations. With ``work_dir`` (main process) it also writes the run
    record (results.csv, scalars.json, see :mod:`utils.run_record`), results.png after every validation
    and pictures; with ``writer`` TensorBoard scalars and images.

    Args:
        start_epoch: epochs finished before this process started (resume); max_epochs: of the run.
        val_iters: iterations of one validation (for the seconds per val iteration in scalars.json).
        batch_picture: ``batch -> BGR image`` drawing the first training batch (``train_batch.jpg``).
    """

    def __init__(self, logger: logging.Logger, writer: SummaryWriter | None, device: torch.device,
                 log_interval: int, max_iters: int, show_bar: bool, batch_size: int, world_size: int,
                 work_dir: Path | None = None, start_epoch: int = 0, max_epochs: int = 0, val_iters: int = 1,
                 batch_picture: Callable[[Mapping[str, Any]], np.ndarray] | None = None) -> None:
        self.logger, self.writer, self.device = logger, writer, device
        self.log_interval, self.max_iters, self.show_bar = log_interval, max_iters, show_bar
        self.batch_size, self.world_size = batch_size, world_size
        self.start, self.iters = time.perf_counter(), 0
        self.work_dir, self.max_epochs, self.val_iters = work_dir, max_epochs, val_iters
        self.record = RunRecord(work_dir, start_epoch) if work_dir is not None else None
        self.batch_picture = batch_picture if work_dir is not None else None
        self.bar: tqdm | None = None
        self.epoch_start = self.val_start = time.perf_counter()
        self.sums: dict[str, float] = {}
        self.count, self.lr = 0, float('nan')
        self.metrics: dict[str, float] = {}

    def log_header(self, model: torch.nn.Module, train_size: int, iters_per_epoch: int,
                   val_size: int) -> None:
        """Two console lines: the data (sizes in instances, iterations per epoch) and the model's size."""
        procs = f' x {self.world_size} processes' if self.world_size > 1 else ''
        self.logger.info('data: train %d instances, %d iterations/epoch (batch %d%s), val %d instances; '
                         '%d epochs', train_size, iters_per_epoch, self.batch_size, procs, val_size,
                         self.max_epochs)
        in_loss = sum(p.numel() for name, p in model.named_parameters() if 'loss_module.' in name)
        total = sum(p.numel() for p in model.parameters()) - in_loss
        self.logger.info('model: %s, %s parameters%s', type(model).__name__, f'{total:,}',
                         f' (+{in_loss:,} in the loss)' if in_loss else '')

    def progress(self, loader: Iterable, epoch: int) -> Iterable:
        """Iterate ``loader`` for 0-based ``epoch`` under its progress bar; starts the epoch's statistics
        and draws the run's first batch (``batch_picture``)."""
        self.epoch_start, self.sums, self.count, self.metrics = time.perf_counter(), {}, 0, {}
        self.bar = tqdm(loader, total=len(loader), disable=not self.show_bar, dynamic_ncols=True,
                        desc=f'Epoch {epoch + 1}/{self.max_epochs}', file=sys.stdout)
        for batch in self.bar:
            if self.batch_picture is not None:
                self.log_picture('train_batch.jpg', self.batch_picture(batch), epoch + 1, 'train/batch')
                self.batch_picture = None
            yield batch

    def log_train(self, epoch: int, i: int, iters_per_epoch: int, it: int, lr: float, means: dict[str, float],
                  step_time: float, data_time: float) -> None:
        """Iteration ``i`` (0-based in the epoch; global 1-based ``it``) closing a ``log_interval`` window:
        ``means`` of its loss terms (and other statistics) and times in seconds per iteration."""
        eta = (time.perf_counter() - self.start) / max(self.iters, 1) * (self.max_iters - it)
        memory = (int(torch.cuda.max_memory_allocated(self.device) / 2 ** 20)
                  if self.device.type == 'cuda' else None)
        loss = sum(v for k, v in means.items() if k.startswith('loss'))
        values = '  '.join(f'{k}: {v:.4f}' for k, v in {'loss': loss, **means}.items())
        self.logger.info('Epoch(train) [%d][%d/%d]  lr: %.4e  eta: %s  time: %.4f  data_time: %.4f%s  %s',
                         epoch + 1, i + 1, iters_per_epoch, lr, format_eta(eta), step_time, data_time,
                         f'  memory: {memory} MB' if memory is not None else '', values,
                         extra=FILE_ONLY if self.show_bar else None)
        if self.bar is not None:
            self.bar.set_postfix_str(f'loss {loss:.4f}  lr {lr:.2e}  ETA {format_eta(eta)}', refresh=False)
        n = i % self.log_interval + 1
        for k, v in {'loss': loss, **means}.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n
        self.count, self.lr = self.count + n, lr
        if self.writer is not None:
            self.writer.add_scalar('train/lr', lr, it)
            for k, v in {'loss': loss, **means}.items():
                self.writer.add_scalar(f'train/{k}', v, it)
        if self.record is not None:
            scalars = {'lr': lr, 'data_time': data_time, 'loss': loss, **means, 'time': step_time}
            self.record.log_train(scalars, epoch + 1, it, memory)
        self.val_start = time.perf_counter()

    def log_metrics(self, metrics: dict[str, float], epoch: int) -> None:
        """The validation after 0-based ``epoch``: one line, TensorBoard, scalars.json."""
        seconds = (time.perf_counter() - self.val_start) / max(self.val_iters, 1)
        values = '  '.join(f'{k}: {v:.4f}' for k, v in metrics.items())
        self.logger.info('Epoch(val) [%d]  %s', epoch + 1, values)
        self.metrics = {k: float(v) for k, v in metrics.items()}
        if self.writer is not None:
            for k, v in metrics.items():
                self.writer.add_scalar(f'val/{k}', v, epoch + 1)
        if self.record is not None:
            self.record.log_val(self.metrics, epoch + 1, seconds)

    def log_picture(self, name: str, img: np.ndarray | None, step: int, tag: str) -> None:
        """Write a BGR picture as ``work_dir/name`` and to TensorBoard under ``tag`` (main process;
        nothing for None)."""
        if img is None or self.work_dir is None:
            return
        write_image(self.work_dir / name, img)
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
            chart = render_panels(results_panels(self.record.rows), cols=2)
            write_image(self.work_dir / 'results.png', chart)

    def log_summary(self, best_key: str | None, rule: str) -> None:
        """The per-epoch table of results.csv with the best epoch marked (main process)."""
        if self.record is not None and self.record.rows:
            self.logger.info('Results per epoch (%s):\n%s', self.record.csv_path,
                             summary_table(self.record.rows, best_key, rule))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
