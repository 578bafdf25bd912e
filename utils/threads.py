"""How many CPU threads a script computes with: one rule, set once per process by :func:`set_threads`.

The rule (``--threads N`` on train.py, val.py, the demo and the tools and benchmarks that run models):

1. ``--threads N`` when given;
2. else ``OMP_NUM_THREADS`` when the environment sets it (torchrun sets 1 for several processes per node);
3. else the free cores: the cores this process may run on (``os.sched_getaffinity``) minus the cores
   other work keeps busy (the 1-minute load average, or the processes runnable right now if more), at
   least 1.

The number goes to torch's intra-op thread pool, OpenCV's and every ONNX Runtime session the process
opens afterwards (``deploy.ort_backend`` reads ``torch.get_num_threads()``). Data-loader workers stay
single-threaded (``datasets.loader``). Oversubscribing the cores is what makes a batch-1 forward take
1,400 ms instead of 8 ms on a busy 2-core machine: each thread of a parallel region waits for the slowest.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import torch

THREADS_ENV = 'OMP_NUM_THREADS'


@dataclass(frozen=True)
class ThreadSetting:
    """The number of compute threads chosen and why (``'--threads'``, ``'OMP_NUM_THREADS'`` or the
    free-core count it came from)."""

    count: int
    source: str

    def __str__(self) -> str:
        return f'{self.count} CPU thread{"s" if self.count != 1 else ""} ({self.source})'


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; all cores where the OS cannot say)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores() -> float:
    """Cores other work keeps busy: the 1-minute load average, or the tasks runnable right now besides
    this one (``/proc/loadavg``, Linux) when more; 0.0 where the OS reports neither."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    try:
        with open('/proc/loadavg', encoding='ascii') as f:
            runnable = int(f.read().split()[3].split('/')[0]) - 1  # minus this process
    except (OSError, ValueError, IndexError):
        runnable = 0
    return max(load, float(runnable))


def default_threads() -> ThreadSetting:
    """The thread count without ``--threads``: ``OMP_NUM_THREADS`` if set to a whole number >= 1, else
    the free cores (see the module docstring)."""
    env = os.environ.get(THREADS_ENV, '').strip()
    if env.isdigit() and int(env) >= 1:
        return ThreadSetting(int(env), f'{THREADS_ENV}={env}')
    cores, busy = usable_cores(), busy_cores()
    free = max(1, min(cores, int(cores - busy + 0.5)))
    return ThreadSetting(free, f'free cores: {cores} usable, load {busy:.1f}; --threads N to change')


def set_threads(threads: int | None = None) -> ThreadSetting:
    """Use ``threads`` compute threads (None: :func:`default_threads`) in torch, OpenCV and the ONNX
    Runtime sessions opened from now on; returns the setting (its ``str`` is what scripts print)."""
    setting = ThreadSetting(threads, '--threads') if threads is not None else default_threads()
    torch.set_num_threads(setting.count)
    cv2.setNumThreads(setting.count)
    return setting
