"""Optimizer wrappers: one training step (backward, accumulation, clipping, AMP loss scaling, step)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from utils.registry import OPTIM_WRAPPERS

_KERNEL_KEYS = ('fused', 'foreach', 'capturable', 'differentiable')


@OPTIM_WRAPPERS.register_module()
class OptimWrapper:
    """Wraps a torch optimizer with gradient accumulation and clipping (mmengine 0.10.7 semantics).

    Args:
        optimizer: the torch optimizer.
        accumulative_counts: number of ``update_params`` calls whose gradients are summed before one
            optimizer step; each loss is divided by it (by the remainder for the last, short group).
        clip_grad: ``dict(max_norm=..., norm_type=2)`` to clip the total gradient norm before each
            step (``type='value'`` with ``clip_value`` clips element-wise instead), or None.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, accumulative_counts: int = 1,
                 clip_grad: dict | None = None) -> None:
        if accumulative_counts < 1:
            raise ValueError(f'optim_wrapper.accumulative_counts must be >= 1, got {accumulative_counts}')
        self.optimizer = optimizer
        self.accumulative_counts = accumulative_counts
        self.clip_grad = dict(clip_grad) if clip_grad else None
        if self.clip_grad is not None:
            clip_type = self.clip_grad.pop('type', 'norm')
            if clip_type not in ('norm', 'value') or not self.clip_grad:
                raise ValueError(f'optim_wrapper.clip_grad must be dict(max_norm=..., norm_type=...) or '
                                 f"dict(type='value', clip_value=...), got {clip_grad}")
            self.clip_type = clip_type
        self._inner_count = 0
        self._max_counts = -1
        self._remainder_counts = -1

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    def initialize_count_status(self, init_counts: int, max_counts: int) -> None:
        """Tell the wrapper the global iteration it starts at and the total number of iterations."""
        self._inner_count = init_counts
        self._max_counts = max_counts
        self._remainder_counts = max_counts % self.accumulative_counts

    def should_update(self) -> bool:
        """True when the gradients accumulated so far should be applied (after ``backward``)."""
        return (self._inner_count % self.accumulative_counts == 0
                or self._inner_count == self._max_counts)

    def should_sync(self) -> bool:
        """True when the coming backward ends an accumulation group (DDP must all-reduce)."""
        return ((self._inner_count + 1) % self.accumulative_counts == 0
                or self._inner_count + 1 == self._max_counts)

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """Wrap forward+loss: skips DDP gradient sync inside an accumulation group."""
        if not self.should_sync() and hasattr(model, 'no_sync'):
            with model.no_sync():
                yield
        else:
            yield

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """0-d ``loss`` divided by the size of its accumulation group (the last group may be shorter)."""
        if self.accumulative_counts == 1:
            return loss
        if self._max_counts == -1 or self._inner_count < self._max_counts - self._remainder_counts:
            return loss / self.accumulative_counts
        return loss / self._remainder_counts

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate the 0-d ``loss`` and count the call."""
        loss.backward()
        self._inner_count += 1

    def _unscale(self) -> None:
        """Hook for AMP: bring gradients to their true scale before clipping or measuring them."""

    def _grad_norm_and_clip(self) -> torch.Tensor | None:
        params = [p for g in self.optimizer.param_groups for p in g['params'] if p.grad is not None]
        if not params:
            return None
        self._unscale()
        grads = [p.grad for p in params]
        if self.clip_grad is not None and self.clip_type == 'norm':
            return torch.nn.utils.clip_grad_norm_(params, **self.clip_grad)
        norm = torch.nn.utils.get_total_norm(grads)
        if self.clip_grad is not None:
            torch.nn.utils.clip_grad_value_(params, **self.clip_grad)
        return norm

    def _optimizer_step(self) -> None:
        self.optimizer.step()

    def update_params(self, loss: torch.Tensor) -> torch.Tensor | None:
        """Backward ``loss``; on the last call of an accumulation group clip, step and zero the grads.

        Returns:
            The total gradient L2 norm (before clipping, a 0-d tensor left on the device so that no
            host sync happens) when a step was taken, else None.
        """
        self.backward(self.scale_loss(loss))
        if not self.should_update():
            return None
        norm = self._grad_norm_and_clip()
        self._optimizer_step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def state_dict(self) -> dict[str, Any]:
        """``{'optimizer': optimizer.state_dict()}`` (AMP adds ``'loss_scaler'``)."""
        return {'optimizer': self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore optimizer state; kernel choices (fused/foreach) stay those of this device."""
        kernels = [{k: g[k] for k in _KERNEL_KEYS if k in g} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state['optimizer'])
        for group, kept in zip(self.optimizer.param_groups, kernels):
            group.update(kept)


@OPTIM_WRAPPERS.register_module()
class AmpOptimWrapper(OptimWrapper):
    """OptimWrapper running forward and loss under ``torch.autocast``.

    Args:
        dtype: 'bfloat16' (no loss scaling needed) or 'float16' (default, as mmengine; uses a
            dynamic ``torch.amp.GradScaler``), or 'float32'/'float64' to disable the cast.
        loss_scale: 'dynamic', a fixed initial scale (float) or GradScaler keyword arguments (dict);
            only used for float16.
        device_type: 'cuda' or 'cpu'; by default the device of the optimizer's first parameter.
        **kwargs: OptimWrapper arguments.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, dtype: str | None = None,
                 loss_scale: str | float | dict = 'dynamic', device_type: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(optimizer, **kwargs)
        dtype = dtype or 'float16'
        if dtype not in ('float16', 'bfloat16', 'float32', 'float64'):
            raise ValueError(f"optim_wrapper.dtype must be 'float16' or 'bfloat16', got {dtype!r}")
        self.cast_dtype = getattr(torch, dtype)
        self.device_type = device_type or optimizer.param_groups[0]['params'][0].device.type
        self._fixed_scale = None
        if loss_scale == 'dynamic':
            scaler_args: dict = {}
        elif isinstance(loss_scale, (int, float)):
            self._fixed_scale = float(loss_scale)
            scaler_args = {'init_scale': self._fixed_scale}
        elif isinstance(loss_scale, dict):
            scaler_args = dict(loss_scale)
        else:
            raise TypeError("optim_wrapper.loss_scale must be 'dynamic', a float or a dict, "
                            f'got {loss_scale!r}')
        self.loss_scaler = torch.amp.GradScaler(
            self.device_type, enabled=self.cast_dtype == torch.float16, **scaler_args)

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        enabled = self.cast_dtype in (torch.float16, torch.bfloat16)
        with super().optim_context(model), torch.autocast(self.device_type, self.cast_dtype, enabled=enabled):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        self.loss_scaler.scale(loss).backward()
        self._inner_count += 1

    def _unscale(self) -> None:
        if self.loss_scaler.is_enabled():
            self.loss_scaler.unscale_(self.optimizer)

    def _optimizer_step(self) -> None:
        self.loss_scaler.step(self.optimizer)
        self.loss_scaler.update(self._fixed_scale)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), 'loss_scaler': self.loss_scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if state.get('loss_scaler'):
            self.loss_scaler.load_state_dict(state['loss_scaler'])
