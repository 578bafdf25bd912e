"""Loading a checkpoint's weights into a model (any recognised format and naming), with messages that say
what differs and why (another backbone width, another head), and the ``init_cfg`` pretrained weights."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.checkpoints.files import CheckpointError, read_checkpoint, state_dict_of, strip_prefix
from models.checkpoints.model_zoo import MODEL_ZOO, resolve_checkpoint
from models.checkpoints.naming import convert_state_dict, detect_format, detect_naming


@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did: the source format/naming and the key differences."""

    format: str
    naming: str | None
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def _shape_mismatches(model_sd: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor]
                      ) -> list[str]:
    return [k for k, v in state_dict.items() if k in model_sd and v.shape != model_sd[k].shape]


def _some(keys: list[str], n: int = 5) -> str:
    return ', '.join(keys[:n]) + (f' (+{len(keys) - n} more)' if len(keys) > n else '') if keys else 'none'


def _mismatch_message(source: str, model_sd: Mapping[str, torch.Tensor],
                      state_dict: Mapping[str, torch.Tensor], keys: list[str]) -> str:
    """One line: how many tensors differ in shape, the first two with both shapes, and a likely cause."""
    shown = '; '.join(f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(model_sd[k].shape)}'
                      for k in keys[:2])
    if any(k.startswith('backbone.') for k in keys):
        hint = 'another backbone width or variant? check model.backbone.widen_factor against the checkpoint'
    else:
        hint = 'another head? check model.head (num_joints, in_channels) and the codec input_size'
    return (f'{source}: tensor shapes differ from the model for {len(keys)} tensors ({shown}'
            f'{"; ..." if len(keys) > 2 else ""}); {hint}')


def load_checkpoint(model: nn.Module, path_or_state: str | os.PathLike | Mapping[str, Any],
                    map_location: Any = 'cpu', strict: bool = True, prefix: str | None = None
                    ) -> LoadReport:
    """Load any recognised checkpoint into ``model`` (converted to this project's naming).

    Args:
        model: the module to fill (a full TopdownPoseEstimator, or a backbone, ...).
        path_or_state: a file path, a loaded checkpoint dict, or a state dict.
        map_location: as ``torch.load``.
        strict: raise :class:`CheckpointError` listing missing/unexpected keys (nothing is loaded then).
        prefix: load only the keys starting with ``prefix`` (stripped), e.g. ``'backbone.'`` to fill a
            backbone from a full-model file; a backbone-only file without the prefix is used as is.

    A backbone-only file loads into ``model.backbone`` when ``model`` has one, and a ``backbone.``
    prefix on every key is dropped when ``model`` has no ``backbone``. Reported keys are relative to
    ``model``. ``data_preprocessor.*`` tensors the model does not hold (mean/std in some MMPose files) are
    ignored. Tensor shape mismatches always raise.
    """
    is_path = isinstance(path_or_state, (str, os.PathLike))
    source = str(path_or_state) if is_path else 'state dict'
    checkpoint = read_checkpoint(path_or_state, map_location) if is_path else path_or_state
    fmt = detect_format(checkpoint)
    state_dict = state_dict_of(checkpoint, source)
    naming = detect_naming(state_dict)
    if naming == 'mmpose':
        state_dict = convert_state_dict(state_dict, 'mmpose', 'ours')
    target, report_prefix = model, ''
    if prefix:
        selected = strip_prefix(state_dict, prefix)
        if not selected and fmt != 'backbone':
            raise CheckpointError(f'{source}: no keys start with prefix {prefix!r}; '
                                  f'first keys: {list(state_dict)[:5]}')
        state_dict = selected or state_dict
    elif fmt == 'backbone' and isinstance(getattr(model, 'backbone', None), nn.Module):
        target, report_prefix = model.backbone, 'backbone.'
        state_dict = strip_prefix(state_dict, 'backbone.') or state_dict
    elif fmt == 'backbone' and all(k.startswith('backbone.') for k in state_dict):
        state_dict = strip_prefix(state_dict, 'backbone.')
    model_sd = target.state_dict()
    state_dict = {k: v for k, v in state_dict.items()  # normalisation constants come from the config
                  if k in model_sd or not k.startswith('data_preprocessor.')}
    missing = [report_prefix + k for k in model_sd if k not in state_dict]
    unexpected = [report_prefix + k for k in state_dict if k not in model_sd]
    mismatched = _shape_mismatches(model_sd, state_dict)
    if mismatched:
        raise CheckpointError(_mismatch_message(source, model_sd, state_dict, mismatched))
    if strict and (missing or unexpected):
        common = len(model_sd) - len(missing)
        kind = (f'another architecture: only {common} of the model\'s {len(model_sd)} tensors are in it'
                if common < len(model_sd) / 2 else
                f'{len(missing)} missing and {len(unexpected)} unexpected keys')
        raise CheckpointError(f'{source} (format {fmt!r}) does not match {type(model).__name__}: {kind}; '
                              f'missing: {_some(missing)}; unexpected: {_some(unexpected)}')
    target.load_state_dict(state_dict, strict=False)
    return LoadReport(format=fmt, naming=naming, missing=missing, unexpected=unexpected)


def pretrained_cfg(init_cfg: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Validate an ``init_cfg``: None, or ``dict(type='Pretrained', checkpoint=PATH or ZOO_NAME,
    prefix=...)`` (prefix optional)."""
    if init_cfg is None:
        return None
    if not isinstance(init_cfg, Mapping) or init_cfg.get('type') != 'Pretrained' \
            or not isinstance(init_cfg.get('checkpoint'), (str, os.PathLike)):
        raise ValueError("init_cfg must be None or dict(type='Pretrained', checkpoint=PATH, "
                         f"prefix='backbone.'), got {init_cfg!r}")
    unknown = set(init_cfg) - {'type', 'checkpoint', 'prefix', 'map_location'}
    if unknown:
        raise ValueError(f'init_cfg has unsupported keys {sorted(unknown)}: {init_cfg!r}')
    return dict(init_cfg)


def load_pretrained(module: nn.Module, init_cfg: Mapping[str, Any]) -> LoadReport:
    """Strictly load ``init_cfg['checkpoint']`` (keys under ``init_cfg['prefix']``) into ``module``.

    The checkpoint is a file path or a model-zoo name (:mod:`models.checkpoints.model_zoo`: found in
    ``pretrained_weight/`` or downloaded there)."""
    cfg = pretrained_cfg(init_cfg)
    path = Path(cfg['checkpoint'])
    if not path.is_file():
        if str(cfg['checkpoint']) not in MODEL_ZOO:
            raise FileNotFoundError(f'pretrained checkpoint {str(path)!r} (init_cfg of '
                                    f'{type(module).__name__}) not found')
        path = resolve_checkpoint(cfg['checkpoint'])
    return load_checkpoint(module, path, map_location=cfg.get('map_location', 'cpu'), strict=True,
                           prefix=cfg.get('prefix'))
