"""The resumable training state written to ``last.pth`` / ``best.pth`` by ``train.py``, and its restore."""
from __future__ import annotations

from typing import Any

from torch import nn

from utils.config import Config
from utils.seed import get_rng_state, set_rng_state


def checkpoint_payload(model: nn.Module, ema: Any, optim: Any, schedulers: list, cfg: Config, epoch: int,
                       it: int, best: dict) -> dict[str, Any]:
    """Everything needed to continue after ``epoch`` epochs (``it`` iterations). ``state_dict`` holds the
    weights to deploy (the EMA ones when EMA is on); ``train_state_dict`` the raw ones then."""
    ema_state = ema.state_dict() if ema is not None else None
    payload = {
        'state_dict': ema_state['module'] if ema_state is not None else model.state_dict(),
        'meta': {'epoch': epoch, 'iter': it, 'config': cfg.pretty_text()},
        'epoch': epoch, 'iter': it, 'best': dict(best),
        'optimizer': optim.state_dict(), 'schedulers': [s.state_dict() for s in schedulers],
        'rng': get_rng_state(),
    }
    if ema_state is not None:
        payload['train_state_dict'] = model.state_dict()
        payload['ema_steps'] = ema_state['steps']
    return payload


def restore(ckpt: dict, model: nn.Module, ema: Any, optim: Any, schedulers: list) -> None:
    """Load a :func:`checkpoint_payload` back into the model, EMA, optimizer, schedulers and RNGs."""
    model.load_state_dict(ckpt.get('train_state_dict', ckpt['state_dict']))
    if ema is not None:
        ema.load_state_dict({'module': ckpt['state_dict'], 'steps': ckpt.get('ema_steps', 0)})
    optim.load_state_dict(ckpt['optimizer'])
    for scheduler, state in zip(schedulers, ckpt['schedulers']):
        scheduler.load_state_dict(state)
    set_rng_state(ckpt['rng'])
