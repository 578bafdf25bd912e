"""The resumable training state written to ``last.pth`` / ``best.pth`` by ``train.py``, and its restore."""
from __future__ import annotations

from typing import Any

from torch import nn

from utils.config import Config


def checkpoint_payload(model: nn.Module, ema: Any, optim: Any, schedulers: list, cfg: Config, epoch: int,
                       it: int, best: dict) -> dict[str, Any]:
    """Everything needed to continue after ``epoch`` epochs (``it`` iterations). ``state_dict`` holds the
    weights to deploy (the EMA ones when EMA is on); ``train_state_dict`` the raw ones then.

    No RNG states: train.py reseeds every RNG from (seed, epoch, rank) at the start of each epoch and a
    resume starts at an epoch boundary, so they would be redundant (and device-specific: CUDA generator
    states cannot be restored on fewer GPUs or on the CPU)."""
    payload = {
        'state_dict': (ema.module if ema is not None else model).state_dict(),
        'meta': {'epoch': epoch, 'iter': it, 'config': cfg.pretty_text()},
        'epoch': epoch, 'iter': it, 'best': dict(best),
        'optimizer': optim.state_dict(), 'schedulers': [s.state_dict() for s in schedulers],
    }
    if ema is not None:
        payload['train_state_dict'] = model.state_dict()
        payload['ema_steps'] = ema.steps
    return payload


def restore(ckpt: dict, model: nn.Module, ema: Any, optim: Any, schedulers: list) -> None:
    """Load a :func:`checkpoint_payload` back into the model, EMA, optimizer and schedulers.

    ``ckpt`` may be read to the CPU (``map_location='cpu'``) whatever device wrote it: every tensor is
    copied onto the device of what it restores. An ``rng`` entry of older checkpoints is ignored (see
    :func:`checkpoint_payload`)."""
    model.load_state_dict(ckpt.get('train_state_dict', ckpt['state_dict']))
    if ema is not None:
        ema.module.load_state_dict(ckpt['state_dict'])
        ema.steps = int(ckpt.get('ema_steps', 0))
    optim.load_state_dict(ckpt['optimizer'])
    for scheduler, state in zip(schedulers, ckpt['schedulers']):
        scheduler.load_state_dict(state)
