"""Optimizers and learning-rate schedulers built from configs."""
from optim.builder import build_optimizer, scale_lr
from optim.ema import ExpMomentumEMA, ExponentialMovingAverage, build_ema, ema_config
from optim.optim_wrapper import AmpOptimWrapper, OptimWrapper
from optim.optimizers import fast_kernel_args
from optim.schedulers import (
    ConstantLR,
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    StepLR,
    build_schedulers,
)

__all__ = ['build_optimizer', 'scale_lr', 'build_schedulers', 'build_ema', 'ema_config', 'OptimWrapper',
           'AmpOptimWrapper', 'ExponentialMovingAverage', 'ExpMomentumEMA', 'LRScheduler', 'LinearLR',
           'ConstantLR', 'StepLR', 'MultiStepLR', 'ExponentialLR', 'CosineAnnealingLR', 'fast_kernel_args']
