"""The training step never waits for the device: several full iterations (forward, loss, backward,
clipping, AdamW, lr schedulers, EMA, statistics) of the RLE and SimCC recipes run with model, optimizer
and batch on PyTorch's ``meta`` device, where any ``.item()``, ``.tolist()``, ``bool(tensor)`` or
data-dependent shape raises. With CUDA, the same step runs under ``torch.cuda.set_sync_debug_mode('error')``.
"""
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from codec import build_codec
from engine import LossModel, StepStats, build_train_model, prepare_batch, train_step
from models import build_pose_estimator
from optim import build_ema, build_optimizer, build_schedulers, ema_config
from utils.config import load_config

REPO = Path(__file__).resolve().parents[1]
RECIPES = {
    'rle': REPO / 'configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py',
    'simcc': REPO / 'configs/simcc/simcc_mbv2-0.75x-wo-deconv_aic-coco-192x192.py',
}
ITERS = 4
LOGGER = logging.getLogger('test_train_step')


def recipe(family: str, amp: bool, device_type: str):
    """The recipe's config with clipping and an EMA hook added (the step's every part runs)."""
    cfg = load_config(RECIPES[family])
    cfg.optim_wrapper['clip_grad'] = dict(max_norm=1.0)
    cfg['custom_hooks'] = [dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, gamma=2000,
                                update_buffers=True)]
    if amp:  # autocast has no 'meta' device type: the AMP wrapper's CPU autocast is active around meta ops
        cfg.optim_wrapper.update(type='AmpOptimWrapper', dtype='bfloat16', device_type=device_type)
    return cfg


def codec_batch(cfg, batch_size: int = 4) -> dict:
    """A CPU batch shaped like the train pipeline's: uint8 images and the codec's targets."""
    codec = build_codec(cfg.codec)
    width, height = cfg.codec['input_size']
    rng = np.random.default_rng(0)
    encoded = [codec.encode(rng.uniform(0, [width, height], (1, 17, 2)).astype(np.float32),
                            np.ones((1, 17), np.float32)) for _ in range(batch_size)]
    targets = {name: torch.from_numpy(np.stack([np.asarray(e[name])[0] for e in encoded]).astype(np.float32))
               for name in encoded[0]}
    inputs = torch.from_numpy(rng.integers(0, 256, (batch_size, 3, height, width), dtype=np.uint8))
    return {'inputs': inputs, 'targets': targets}


def cuda_batch(cfg, batch_size: int = 8) -> dict:
    """:func:`codec_batch` as train.py feeds it on CUDA: pinned, copied non-blocking, channels_last."""
    cpu = codec_batch(cfg, batch_size)
    pinned = {'inputs': cpu['inputs'].pin_memory(),
              'targets': {k: v.pin_memory() for k, v in cpu['targets'].items()}}
    return prepare_batch(pinned, torch.device('cuda'), channels_last=True)


def run_steps(cfg, model, train_model, batch, first_it: int = 0):
    optim = build_optimizer(model, cfg.optim_wrapper)
    schedulers = build_schedulers(optim, cfg.param_scheduler, iters_per_epoch=10,
                                  max_epochs=int(cfg.train_cfg['max_epochs']))
    ema = build_ema(model, ema_config(cfg))
    stats = StepStats(capacity=ITERS + 1)
    lr0 = optim.param_groups[0]['lr']
    for it in range(first_it, first_it + ITERS):
        losses = train_step(train_model, optim, batch, it, stats, ema, schedulers)
    return optim, ema, stats, losses, lr0


@pytest.mark.parametrize('amp', [False, True], ids=['fp32', 'amp'])
@pytest.mark.parametrize('family', sorted(RECIPES))
def test_step_on_meta_device_reads_nothing_back(family, amp):
    cfg = recipe(family, amp, 'cpu')
    model = build_pose_estimator(cfg.model).to('meta')
    train_model = LossModel(model).train()
    batch = prepare_batch(codec_batch(cfg), torch.device('meta'))
    optim, ema, stats, losses, lr0 = run_steps(cfg, model, train_model, batch)
    assert set(losses) == {'loss_kpt', 'acc_pose'} and losses['loss_kpt'].is_meta
    assert stats.readbacks == 0 and len(stats.rows) == ITERS and stats.buffer.is_meta
    assert stats.names == ['loss_kpt', 'acc_pose', 'grad_norm'] and all(gn for _, gn in stats.rows)
    assert ema.steps == ITERS and optim.param_groups[0]['lr'] > lr0  # warm-up schedule stepped per iteration
    assert all(p.is_meta for p in optim.optimizer.state[next(model.parameters())].values()
               if isinstance(p, torch.Tensor) and p.ndim)


@pytest.mark.cuda
@pytest.mark.parametrize('amp', [False, True], ids=['fp32', 'amp'])
@pytest.mark.parametrize('family', sorted(RECIPES))
def test_step_on_cuda_never_synchronises(family, amp):
    device = torch.device('cuda')
    torch.backends.cudnn.benchmark = True
    cfg = recipe(family, amp, 'cuda')
    model, train_model = build_train_model(cfg, device, 1)
    run_steps(cfg, model, train_model, cuda_batch(cfg))  # warm-up: cuDNN autotuning, lazy init may sync
    batch = cuda_batch(cfg)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        _, _, stats, _, _ = run_steps(cfg, model, train_model, batch, first_it=ITERS)
    finally:
        torch.cuda.set_sync_debug_mode('default')
    assert stats.readbacks == 0
    means = stats.means()
    assert stats.readbacks == 1 and np.isfinite(means['loss_kpt'])
