"""The training step never waits for the device: several full iterations (forward, loss, backward,
clipping, AdamW, lr schedulers, EMA, statistics) of the RLE and SimCC recipes, and of the RLE recipe's
QAT model, run with model, optimizer and batch on PyTorch's ``meta`` device, where any ``.item()``,
``.tolist()``, ``bool(tensor)`` or data-dependent shape raises. With CUDA, the same step runs under
``torch.cuda.set_sync_debug_mode('error')``.
"""

import numpy as np
import pytest
import torch

from engine import LossModel, StepStats, build_train_model, prepare_batch, train_step
from models import build_pose_estimator
from models.qat import prepare_qat
from optim import build_ema, build_optimizer, build_schedulers, ema_config
from tests.conftest import STEP_RECIPES, codec_batch, cuda_batch, step_recipe

ITERS = 4


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
@pytest.mark.parametrize('family', sorted(STEP_RECIPES))
@pytest.mark.slow
def test_step_on_meta_device_reads_nothing_back(family, amp):
    cfg = step_recipe(family, amp, 'cpu')
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


@pytest.mark.parametrize('amp', [False, True], ids=['fp32', 'amp'])
@pytest.mark.slow
def test_qat_step_on_meta_device_reads_nothing_back(amp):
    """QAT's fake-quant observes, updates its ranges and quantises inside one op per module
    (``FusedMovingAvgObsFakeQuantize``): no Python branch on a device tensor in the step."""
    cfg = step_recipe('rle', amp, 'cpu')
    model = prepare_qat(build_pose_estimator(cfg.model), dict(mode='qat')).to('meta')
    train_model = LossModel(model).train()
    batch = prepare_batch(codec_batch(cfg), torch.device('meta'))
    optim, ema, stats, losses, _ = run_steps(cfg, model, train_model, batch)
    assert losses['loss_kpt'].is_meta and stats.readbacks == 0 and len(stats.rows) == ITERS
    scales = [k for k, v in model.state_dict().items() if k.endswith('.scale') and v.is_meta]
    assert len(scales) > 50 and ema.steps == ITERS  # every fake-quant's range lives on the device


@pytest.mark.cuda
@pytest.mark.parametrize('amp', [False, True], ids=['fp32', 'amp'])
@pytest.mark.parametrize('family', sorted(STEP_RECIPES))
def test_step_on_cuda_never_synchronises(family, amp):
    device = torch.device('cuda')
    torch.backends.cudnn.benchmark = True
    cfg = step_recipe(family, amp, 'cuda')
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
