"""The project's text logger (console + file, main process only; console lines printed above progress bars)
and the environment report.

Every module logs under the project logger :data:`LOGGER_NAME` or a child of it
(``logging.getLogger('mmpose_clean.<package>')``), which propagates to it: :func:`get_logger` gives it
its handlers once per process, so every record reaches the console and train.log once."""
from __future__ import annotations

import logging
import platform
import sys
from pathlib import Path

from tqdm import tqdm

# utils.errors.warn logs here too, while a config loads: so torch and numpy are imported in collect_env only
LOGGER_NAME = 'mmpose_clean'
_FORMAT = '%(asctime)s - %(levelname)s - %(message)s'
FILE_ONLY = {'file_only': True}  # ``logger.info(..., extra=FILE_ONLY)``: the log file, not the console


def plural(count: int, noun: str) -> str:
    """``'1 epoch'``, ``'3 epochs'``: a count with its noun in the number it takes (English ``-s``)."""
    return f'{count} {noun}' + ('' if count == 1 else 's')


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
    import numpy as np
    import torch

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
