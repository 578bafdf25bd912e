"""Distributed helpers: process-group setup from torchrun's environment, rank queries, collectives."""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a torch.distributed process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def init_distributed(device: str | None = None, backend: str | None = None) -> tuple[int, int, torch.device]:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT), if any.

    Args:
        device: 'cuda' or 'cpu'; None picks 'cuda' when available, else 'cpu'.
        backend: default 'nccl' on CUDA and 'gloo' on CPU.

    Returns:
        (rank, world_size, device); device is ``cuda:LOCAL_RANK`` on CUDA. A plain ``python train.py``
        gets (0, 1, device) and no process group.
    """
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    dev = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if dev.type == 'cuda':  # cuda:N in one process; the rank's GPU under torchrun
        dev = torch.device('cuda', local_rank if world_size > 1 or dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    if world_size > 1 and not is_distributed():
        backend = backend or ('nccl' if dev.type == 'cuda' else 'gloo')
        if dev.type == 'cpu' and backend == 'nccl':
            backend = 'gloo'
        dist.init_process_group(backend=backend, device_id=dev if dev.type == 'cuda' else None)
    return get_rank(), get_world_size(), dev


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (any picklable object)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy ``module``'s buffers (e.g. BatchNorm running statistics, which every rank updates from
    its own batches) from rank ``src`` to all ranks, in place."""
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=src)


def cleanup() -> None:
    """Leave the process group, if any."""
    if is_distributed():
        dist.destroy_process_group()
