"""CUDA-only behaviour (skipped without a GPU; ``benchmarks/gpu_check.py`` runs them): AMP bf16/fp16 steps
with channels_last, fused AdamW and EMA; QAT forward/backward; a one-process NCCL DDP step; evaluation on
the GPU equal to the CPU's; train.py with --amp and --resume on CUDA."""
import datetime
import math
import os
import socket

import pytest
import torch

import train
from datasets import build_dataloader
from engine import LossModel, StepStats, build_train_model, train_step
from evaluation import evaluate_model
from models import build_pose_estimator
from models.checkpoints import load_checkpoint, read_checkpoint
from models.qat import prepare_qat
from optim import build_ema, build_optimizer, ema_config
from tests.conftest import (
    REPO,
    RLE_WEIGHTS,
    SAMPLE_CONFIG,
    cuda_batch,
    needs_data,
    needs_weights,
    sample_config_options,
    step_recipe,
)
from utils.config import load_config
from utils.registry import METRICS

pytestmark = pytest.mark.cuda
ITERS = 12  # float16 on CPU applied its first step at the 8th (scale 2^9) with the RLE recipe, batch 4


@pytest.mark.parametrize('dtype', ['bfloat16', 'float16'])
@pytest.mark.parametrize('family', ['rle', 'simcc'])
def test_amp_step_with_channels_last_fused_adamw_and_ema(family, dtype):
    cfg = step_recipe(family, False, 'cuda')
    cfg.optim_wrapper.update(type='AmpOptimWrapper', dtype=dtype)
    model, train_model = build_train_model(cfg, torch.device('cuda'), 1)
    optim = build_optimizer(model, cfg.optim_wrapper)
    ema = build_ema(model, ema_config(cfg))
    assert optim.optimizer.defaults.get('fused') is True
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.ndim == 4)
    batch = cuda_batch(cfg)
    stats = StepStats(ITERS + 1)
    before = [p.detach().clone() for p in model.parameters()]
    for it in range(ITERS):  # float16: the loss scale starts at 2^16 and halves on each overflowing step
        train_step(train_model, optim, batch, it, stats, ema, [])
    means = stats.means()
    assert stats.first_bad is None and means['loss_kpt'] == means['loss_kpt']
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert optim.loss_scaler.is_enabled() == (dtype == 'float16')
    assert ema.steps == ITERS and next(ema.module.parameters()).is_cuda
    if family == 'rle':  # the head's outputs stay fp32 under autocast
        with torch.autocast('cuda', getattr(torch, dtype)):
            assert model(model.preprocess(batch['inputs'])).dtype == torch.float32


def test_qat_forward_backward_on_cuda():
    cfg = step_recipe('rle', False, 'cuda')
    model = build_pose_estimator(cfg.model).cuda()
    qat = prepare_qat(model, dict(mode='qat'))
    optim = build_optimizer(qat, cfg.optim_wrapper)
    batch = cuda_batch(cfg, 4)
    stats = StepStats(5)
    scales = {k: v.clone() for k, v in qat.state_dict().items() if k.endswith('.scale')}
    for it in range(3):
        train_step(LossModel(qat).train(), optim, batch, it, stats)
    assert math.isfinite(stats.means()['loss_kpt']) and stats.first_bad is None
    changed = [k for k, v in qat.state_dict().items() if k in scales and not torch.equal(v, scales[k])]
    assert changed  # the fused observers ran on the GPU


def test_one_process_nccl_ddp_step():
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    store = dist.TCPStore('127.0.0.1', port, 1, is_master=True)
    dist.init_process_group('nccl', store=store, rank=0, world_size=1, device_id=torch.device('cuda', 0),
                            timeout=datetime.timedelta(seconds=60))
    try:
        cfg = step_recipe('rle', True, 'cuda')
        model = build_pose_estimator(cfg.model).cuda().to(memory_format=torch.channels_last)
        train_model = DistributedDataParallel(LossModel(model), device_ids=[0])
        optim = build_optimizer(model, cfg.optim_wrapper)
        stats = StepStats(4)
        for it in range(3):
            train_step(train_model, optim, cuda_batch(cfg), it, stats)
        assert stats.means() and stats.first_bad is None
    finally:
        dist.destroy_process_group()


@needs_data
@needs_weights
def test_evaluation_on_cuda_equals_cpu():
    cfg = load_config(SAMPLE_CONFIG, sample_config_options())
    model = build_pose_estimator(cfg.model)
    load_checkpoint(model, RLE_WEIGHTS)
    loader = build_dataloader({**cfg.val_dataloader, 'pin_memory': True}, seed=0, distributed=False,
                              cfg_dir=SAMPLE_CONFIG.parent)
    metric = METRICS.build(cfg.val_evaluator)
    ap_cpu = evaluate_model(model, loader, metric, 'cpu', progress=False)['coco/AP']
    ap_cuda = evaluate_model(model.cuda(), loader, metric, 'cuda', progress=False)['coco/AP']
    assert ap_cuda == pytest.approx(ap_cpu, abs=2e-3)


@needs_data
@needs_weights
def test_train_amp_then_resume_on_cuda(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    work_dir = tmp_path / 'work'
    args = ['--cfg_file', str(SAMPLE_CONFIG), '--work-dir', str(work_dir), '--device', 'cuda', '--amp']
    assert train.main(args + ['--cfg-options', 'train_cfg.max_epochs=1', *sample_config_options()]) == 0
    assert train.main(args + ['--resume', '--cfg-options', 'train_cfg.max_epochs=2',
                              *sample_config_options()]) == 0
    log = (work_dir / 'train.log').read_text()
    assert 'Resumed from' in log and "'dtype': 'bfloat16'" in log
    assert read_checkpoint(work_dir / 'last.pth')['epoch'] == 2
    assert os.path.isfile(work_dir / 'best.pth')
