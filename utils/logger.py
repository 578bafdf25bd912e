"""Run logging: a text logger (console + file, main process only), environment report, time formatting."""
from __future__ import annotations

import datetime
import logging
import platform
import sys
from pathlib import Path

import numpy as np
import torch

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
