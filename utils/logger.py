"""Run logging: a text logger (console + file, main process only), environment report, training
progress lines and TensorBoard scalars."""
from __future__ import annotations

import datetime
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

LOGGER_NAME = 'mmpose_clean'
_FORMAT = '%(asctime)s - %(levelname)s - %(message)s'


def get_logger(log_file: str | Path | None = None, rank: int = 0,
               level: int = logging.INFO) -> logging.Logger:
    """The project logger; rank 0 logs ``level`` and above to stdout and ``log_file``, other ranks
    only errors to stderr. Calling it again replaces the handlers (one per process)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(_FORMAT, datefmt='%Y/%m/%d %H:%M:%S')
    if rank == 0:
        console: logging.Handler = logging.StreamHandler(sys.stdout)
        logger.setLevel(level)
    else:
        console = logging.StreamHandler(sys.stderr)
        logger.setLevel(logging.ERROR)
    console.setFormatter(formatter)
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
    """Console/file/TensorBoard reporting of one run, and its iteration timing."""

    def __init__(self, logger: logging.Logger, writer: SummaryWriter | None, device: torch.device,
                 log_interval: int, max_iters: int, show_bar: bool, batch_size: int, world_size: int) -> None:
        self.logger, self.writer, self.device = logger, writer, device
        self.log_interval, self.max_iters, self.show_bar = log_interval, max_iters, show_bar
        self.batch_size, self.world_size = batch_size, world_size
        self.start, self.iters = time.perf_counter(), 0

    def log_train(self, epoch: int, i: int, iters_per_epoch: int, it: int, lr: float, means: dict[str, float],
                  step_time: float, data_time: float) -> None:
        """One line per ``log_interval`` iterations; times are means over the window (seconds)."""
        eta = (time.perf_counter() - self.start) / max(self.iters, 1) * (self.max_iters - it)
        mem = (f'  memory: {torch.cuda.max_memory_allocated(self.device) / 2 ** 20:.0f} MB'
               if self.device.type == 'cuda' else '')
        values = '  '.join(f'{k}: {v:.4f}' for k, v in means.items())
        self.logger.info('Epoch(train) [%d][%d/%d]  lr: %.4e  eta: %s  time: %.4f  data_time: %.4f%s  %s',
                         epoch + 1, i + 1, iters_per_epoch, lr, format_eta(eta), step_time, data_time, mem,
                         values)
        if self.writer is not None:
            self.writer.add_scalar('train/lr', lr, it)
            for k, v in means.items():
                self.writer.add_scalar(f'train/{k}', v, it)

    def log_metrics(self, metrics: dict[str, float], epoch: int) -> None:
        values = '  '.join(f'{k}: {v:.4f}' for k, v in metrics.items())
        self.logger.info('Epoch(val) [%d]  %s', epoch + 1, values)
        if self.writer is not None:
            for k, v in metrics.items():
                self.writer.add_scalar(f'val/{k}', v, epoch + 1)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
