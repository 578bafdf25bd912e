"""Learning-rate schedulers with mmengine 0.10.7 semantics (chainable, ``begin``/``end``, by epoch or iter).

Each scheduler changes the lr it finds in the param groups by a recursive (multiplicative) rule, so
several schedulers compose in list order exactly as mmengine's ParamScheduler chain does: the same
formulas, evaluated in the same order, give bit-identical learning rates.

A scheduler counts its own ``step()`` calls (``global_step``, 0 right after construction, which
itself calls ``step()`` once) and acts only while ``begin <= global_step < end``; ``last_step`` counts
the steps it acted on (0 at its first). ``by_epoch`` schedulers are stepped after every epoch, the
others after every iteration.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any

from utils.registry import SCHEDULERS

INF = int(1e9)


class LRScheduler:
    """Base class: steps ``lr`` of every param group of ``optimizer`` (a torch optimizer or wrapper).

    ``epoch_fields`` names constructor arguments counted in epochs that ``convert_to_iter_based``
    multiplies by the epoch length (``begin``/``end`` always are).
    """

    epoch_fields: tuple[str, ...] = ()

    def __init__(self, optimizer: Any, begin: int = 0, end: int = INF, by_epoch: bool = True) -> None:
        if end <= begin:
            raise ValueError(f'{type(self).__name__}: end must be larger than begin, '
                             f'got begin={begin}, end={end}')
        self.optimizer = optimizer
        self.begin, self.end, self.by_epoch = begin, end, by_epoch
        for group in optimizer.param_groups:
            group.setdefault('initial_lr', group['lr'])
        self.base_values = [group['initial_lr'] for group in optimizer.param_groups]
        self.last_step = -1
        self.global_step = -1
        self.step()

    def _get_value(self) -> list[float]:
        raise NotImplementedError

    def _current(self) -> list[float]:
        return [group['lr'] for group in self.optimizer.param_groups]

    def step(self) -> None:
        """Advance one epoch or iteration; set the lr of each group if the step is in [begin, end)."""
        self.global_step += 1
        if self.begin <= self.global_step < self.end:
            self.last_step += 1
            for group, value in zip(self.optimizer.param_groups, self._get_value()):
                group['lr'] = value

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != 'optimizer'}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


@SCHEDULERS.register_module()
class LinearLR(LRScheduler):
    """lr factor goes linearly from ``start_factor`` (at ``begin``) to ``end_factor`` (at ``end - 1``)."""

    def __init__(self, optimizer: Any, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 begin: int = 0, end: int = INF, by_epoch: bool = True) -> None:
        if not (0 <= start_factor <= 1 and 0 <= end_factor <= 1):
            raise ValueError(f'LinearLR factors must lie in [0, 1], got start_factor={start_factor}, '
                             f'end_factor={end_factor}')
        self.start_factor, self.end_factor = start_factor, end_factor
        self.total_iters = end - begin - 1
        super().__init__(optimizer, begin, end, by_epoch)

    def _get_value(self) -> list[float]:
        if self.last_step == 0:
            return [lr * self.start_factor for lr in self._current()]
        delta = self.end_factor - self.start_factor
        ratio = 1.0 + delta / (self.total_iters * self.start_factor + (self.last_step - 1) * delta)
        return [lr * ratio for lr in self._current()]


@SCHEDULERS.register_module()
class ConstantLR(LRScheduler):
    """lr times ``factor`` from ``begin`` until ``end - 1``, where the factor is undone."""

    def __init__(self, optimizer: Any, factor: float = 1.0 / 3, begin: int = 0, end: int = INF,
                 by_epoch: bool = True) -> None:
        if not 0 <= factor <= 1:
            raise ValueError(f'ConstantLR factor must lie in [0, 1], got {factor}')
        self.factor = factor
        self.total_iters = end - begin - 1
        super().__init__(optimizer, begin, end, by_epoch)

    def _get_value(self) -> list[float]:
        if self.last_step == 0:
            return [lr * self.factor for lr in self._current()]
        if self.last_step == self.total_iters:
            return [lr * (1.0 / self.factor) for lr in self._current()]
        return self._current()


@SCHEDULERS.register_module()
class StepLR(LRScheduler):
    """lr times ``gamma`` every ``step_size`` steps."""

    epoch_fields = ('step_size',)

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1, begin: int = 0,
                 end: int = INF, by_epoch: bool = True) -> None:
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, begin, end, by_epoch)

    def _get_value(self) -> list[float]:
        if self.last_step == 0 or self.last_step % self.step_size != 0:
            return self._current()
        return [lr * self.gamma for lr in self._current()]


@SCHEDULERS.register_module()
class MultiStepLR(LRScheduler):
    """lr times ``gamma`` at each milestone (counted in the scheduler's own steps from ``begin``)."""

    epoch_fields = ('milestones',)

    def __init__(self, optimizer: Any, milestones: list[int], gamma: float = 0.1, begin: int = 0,
                 end: int = INF, by_epoch: bool = True) -> None:
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, begin, end, by_epoch)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), 'milestones': dict(self.milestones)}  # plain dict: weights_only load

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict({**state, 'milestones': Counter(state['milestones'])})

    def _get_value(self) -> list[float]:
        if self.last_step not in self.milestones:
            return self._current()
        return [lr * self.gamma ** self.milestones[self.last_step] for lr in self._current()]


@SCHEDULERS.register_module()
class ExponentialLR(LRScheduler):
    """lr times ``gamma`` at every step after the first."""

    def __init__(self, optimizer: Any, gamma: float, begin: int = 0, end: int = INF,
                 by_epoch: bool = True) -> None:
        self.gamma = gamma
        super().__init__(optimizer, begin, end, by_epoch)

    def _get_value(self) -> list[float]:
        if self.last_step == 0:
            return self._current()
        return [lr * self.gamma for lr in self._current()]


@SCHEDULERS.register_module()
class CosineAnnealingLR(LRScheduler):
    """Cosine from the lr at ``begin`` down to ``eta_min`` (or ``eta_min_ratio`` * initial lr)
    over ``T_max`` steps (default ``end - begin``); closed form ``eta_min + (lr0 - eta_min) *
    (1 + cos(pi * t / T_max)) / 2`` with ``t`` the steps since ``begin``."""

    epoch_fields = ('T_max',)

    def __init__(self, optimizer: Any, T_max: int | None = None, eta_min: float | None = None,
                 begin: int = 0, end: int = INF, by_epoch: bool = True,
                 eta_min_ratio: float | None = None) -> None:
        if eta_min is None and eta_min_ratio is None:
            eta_min = 0.0
        if eta_min is not None and eta_min_ratio is not None:
            raise ValueError('CosineAnnealingLR: set either eta_min or eta_min_ratio, not both')
        self.T_max = T_max or (end - begin)
        self.eta_min, self.eta_min_ratio = eta_min, eta_min_ratio
        super().__init__(optimizer, begin, end, by_epoch)

    def _eta_min(self, base: float) -> float:
        return self.eta_min if self.eta_min_ratio is None else base * self.eta_min_ratio

    def _get_value(self) -> list[float]:
        current = self._current()
        if self.last_step == 0:
            return current
        t, period = self.last_step, self.T_max
        if (t - 1 - period) % (2 * period) == 0:
            return [lr + (base - self._eta_min(base)) * (1 - math.cos(math.pi / period)) / 2
                    for base, lr in zip(self.base_values, current)]
        ratio = (1 + math.cos(math.pi * t / period)) / (1 + math.cos(math.pi * (t - 1) / period))
        return [ratio * (lr - self._eta_min(base)) + self._eta_min(base)
                for base, lr in zip(self.base_values, current)]


def build_scheduler(optimizer: Any, cfg: dict, iters_per_epoch: int, max_epochs: int | None = None,
                    cfg_path: str = 'param_scheduler') -> LRScheduler:
    """Build one scheduler from its config dict.

    ``by_epoch`` defaults to True and ``end`` to ``max_epochs`` (epochs) or ``max_epochs *
    iters_per_epoch`` (iterations). ``convert_to_iter_based=True`` turns an epoch-based scheduler into
    the iteration-based one with every epoch count multiplied by ``iters_per_epoch``.
    """
    cfg = dict(cfg)
    convert = cfg.pop('convert_to_iter_based', False)
    cfg.setdefault('by_epoch', True)
    if max_epochs is not None:
        cfg.setdefault('end', max_epochs if cfg['by_epoch'] else max_epochs * iters_per_epoch)
    if convert:
        if not cfg['by_epoch']:
            raise ValueError(f'{cfg_path}: convert_to_iter_based needs by_epoch=True')
        if iters_per_epoch < 1:
            raise ValueError(f'{cfg_path}: iters_per_epoch must be positive, got {iters_per_epoch}')
        cls = SCHEDULERS.get(cfg['type'])
        cfg['by_epoch'] = False
        cfg['begin'] = int(cfg.get('begin', 0) * iters_per_epoch)
        if cfg.get('end', INF) != INF:
            cfg['end'] = int(cfg['end'] * iters_per_epoch)
        for name in cls.epoch_fields:
            value = cfg.get(name)
            if isinstance(value, (list, tuple)):
                cfg[name] = [v * iters_per_epoch for v in value]
            elif value is not None:
                cfg[name] = value * iters_per_epoch
    return SCHEDULERS.build(cfg, cfg_path=cfg_path, optimizer=optimizer)


def build_schedulers(optimizer: Any, param_scheduler_cfgs: dict | list[dict] | None, iters_per_epoch: int,
                     max_epochs: int | None = None) -> list[LRScheduler]:
    """Build the scheduler chain of ``cfg.param_scheduler`` (a dict or a list of dicts), in order.

    Must be called after any lr scaling (``scale_lr``): schedulers record ``initial_lr`` on creation.
    """
    if param_scheduler_cfgs is None:
        return []
    if isinstance(param_scheduler_cfgs, dict):
        param_scheduler_cfgs = [param_scheduler_cfgs]
    return [build_scheduler(optimizer, c, iters_per_epoch, max_epochs, f'param_scheduler[{i}]')
            for i, c in enumerate(param_scheduler_cfgs)]

