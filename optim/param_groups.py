"""Per-parameter optimizer options (``paramwise_cfg``), mmengine DefaultOptimWrapperConstructor rules."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from torch import nn

logger = logging.getLogger('mmpose_clean.optim')

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
               nn.GroupNorm, nn.LayerNorm)
_KNOWN_KEYS = {'custom_keys', 'bias_lr_mult', 'bias_decay_mult', 'norm_decay_mult',
               'dwconv_decay_mult', 'flat_decay_mult', 'bypass_duplicate'}


def _check(paramwise_cfg: Mapping[str, Any], base_wd: float | None) -> None:
    unknown = set(paramwise_cfg) - _KNOWN_KEYS
    if unknown:
        raise KeyError(f'optim_wrapper.paramwise_cfg has unknown keys {sorted(unknown)}; '
                       f'expected some of {sorted(_KNOWN_KEYS)}')
    custom = paramwise_cfg.get('custom_keys', {})
    if not isinstance(custom, Mapping):
        raise TypeError('optim_wrapper.paramwise_cfg.custom_keys must be a dict, '
                        f'got {type(custom).__name__}')
    needs_wd = any('decay_mult' in v for v in custom.values()) or any(
        k in paramwise_cfg for k in ('bias_decay_mult', 'norm_decay_mult', 'dwconv_decay_mult'))
    if needs_wd and base_wd is None:
        raise ValueError('optim_wrapper.paramwise_cfg sets a *decay_mult but '
                         'optim_wrapper.optimizer.weight_decay is not set')


def build_param_groups(model: nn.Module, paramwise_cfg: Mapping[str, Any], base_lr: float | None,
                       base_wd: float | None) -> list[dict]:
    """One param group per trainable parameter, with lr / weight_decay set by ``paramwise_cfg``.

    Rules (mmengine 0.10.7): the longest matching ``custom_keys`` substring of the parameter's full
    name wins (ties: alphabetical) and sets ``lr = base_lr * lr_mult``, ``weight_decay = base_wd *
    decay_mult`` plus any other keys it holds; otherwise ``bias_lr_mult`` scales the lr of non-norm
    biases, and the weight decay is scaled by the first that applies of ``norm_decay_mult`` (params
    of norm layers), ``bias_decay_mult`` (biases), ``dwconv_decay_mult`` (depth-wise convs),
    ``flat_decay_mult`` (other 1-D params). ``bypass_duplicate`` skips parameters shared with an
    earlier module; frozen parameters (``requires_grad=False``) are left out.
    """
    _check(paramwise_cfg, base_wd)
    custom_keys = paramwise_cfg.get('custom_keys', {})
    sorted_keys = sorted(sorted(custom_keys), key=len, reverse=True)
    bias_lr_mult = paramwise_cfg.get('bias_lr_mult')
    mults = [(paramwise_cfg.get(k), k) for k in
             ('norm_decay_mult', 'bias_decay_mult', 'dwconv_decay_mult', 'flat_decay_mult')]
    bypass_duplicate = paramwise_cfg.get('bypass_duplicate', False)

    groups: list[dict] = []
    seen: set[int] = set()
    for prefix, module in model.named_modules(remove_duplicate=False):
        is_norm = isinstance(module, _NORM_TYPES)
        is_dwconv = isinstance(module, nn.Conv2d) and module.in_channels == module.groups
        for name, param in module.named_parameters(recurse=False):
            full_name = f'{prefix}.{name}' if prefix else name
            if bypass_duplicate and id(param) in seen:
                logger.warning('%s is shared with an earlier module; skipped (bypass_duplicate)', full_name)
                continue
            if not param.requires_grad:
                logger.warning('%s is skipped since it does not require grad', full_name)
                continue
            seen.add(id(param))
            group: dict[str, Any] = {'params': [param]}
            key = next((k for k in sorted_keys if k in f'{prefix}.{name}'), None)
            if key is not None:
                group['lr'] = base_lr * custom_keys[key].get('lr_mult', 1.0)
                if base_wd is not None:
                    group['weight_decay'] = base_wd * custom_keys[key].get('decay_mult', 1.0)
                group.update(custom_keys[key])
            else:
                if name == 'bias' and not is_norm and bias_lr_mult is not None:
                    group['lr'] = base_lr * bias_lr_mult
                if base_wd is not None:
                    applies = {'norm_decay_mult': is_norm, 'bias_decay_mult': name == 'bias',
                               'dwconv_decay_mult': is_dwconv, 'flat_decay_mult': param.ndim == 1}
                    for mult, which in mults:
                        if mult is not None and applies[which]:
                            group['weight_decay'] = base_wd * mult
                            break
            groups.append(group)
    return groups

