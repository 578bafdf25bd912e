"""Loading a checkpoint's weights into a model (any recognised format and naming), with messages that name
the config key or argument that gave the file and say what differs and why (another backbone width,
another keypoint count), a warning when the weights were trained at another input size than the model's,
and the ``init_cfg`` pretrained weights."""
from __future__ import annotations

import ast
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.checkpoints.files import (
    CheckpointError,
    check_finite,
    read_checkpoint,
    state_dict_of,
    strip_prefix,
)
from models.checkpoints.model_zoo import MODEL_ZOO, resolve_checkpoint
from models.checkpoints.naming import convert_state_dict, detect_format, detect_naming
from utils.config import parse_value
from utils.errors import warn


@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did: the source format/naming and the key differences."""

    format: str
    naming: str | None
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    input_size: tuple[int, int] | None = None  # (w, h) the weights were trained at, when known


def _shape_mismatches(model_sd: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor]
                      ) -> list[str]:
    return [k for k, v in state_dict.items() if k in model_sd and v.shape != model_sd[k].shape]


def _some(keys: list[str], n: int = 5) -> str:
    return ', '.join(keys[:n]) + (f' (+{len(keys) - n} more)' if len(keys) > n else '') if keys else 'none'


def _likely_cause(keys: list[str]) -> str:
    """What to check when the tensors ``keys`` (names in the full model) differ in shape."""
    parts = {k.split('.', 1)[0] for k in keys}
    if 'backbone' in parts:
        return 'another backbone width or type: check model.backbone.widen_factor'
    if 'head' in parts:
        return ('another keypoint count or head: check model.head (num_joints / out_channels, in_channels) '
                'and codec.input_size')
    if 'bbox_head' in parts:
        return 'another class count or head: check model.bbox_head (num_classes, in_channels)'
    return f'another {"neck" if "neck" in parts else "model"}: check the config\'s model'


def _mismatch_message(source: str, model_sd: Mapping[str, torch.Tensor],
                      state_dict: Mapping[str, torch.Tensor], keys: list[str], where: str) -> str:
    """One line: how many tensors differ in shape, the first with both shapes, and a likely cause."""
    first = keys[0]
    more = f' and {len(keys) - 1} more' if len(keys) > 1 else ''
    return (f'{source}: tensor shapes differ from the model ({where}{first}: checkpoint '
            f'{tuple(state_dict[first].shape)} vs model {tuple(model_sd[first].shape)}{more}); '
            f'{_likely_cause([where + k for k in keys])}')


def trained_input_size(checkpoint: Any) -> tuple[int, int] | None:
    """The input size (w, h) a checkpoint was trained at: ``meta['input_size']`` (train.py records it), else
    ``codec``'s ``input_size`` in the config text an older or MMPose checkpoint keeps in ``meta['config']``
    / ``meta['cfg']`` (read as literals, never run); None when neither says."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, Mapping) else None
    if not isinstance(meta, Mapping):
        return None
    size = meta.get('input_size')
    if size is None:
        text = next((t for t in (meta.get('config'), meta.get('cfg')) if isinstance(t, str)), '')
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            return None
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == 'codec'
                                                    for t in node.targets):
                codec = parse_value(ast.get_source_segment(text, node.value) or '')
                size = codec.get('input_size') if isinstance(codec, Mapping) else None
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        return None
    return width, height


def model_input_size(model: nn.Module) -> tuple[int, int] | None:
    """The input size (w, h) of a pose estimator: its head's codec's ``input_size``; None for other models."""
    size = getattr(getattr(getattr(model, 'head', None), 'decoder', None), 'input_size', None)
    return (int(size[0]), int(size[1])) if size is not None else None


def named_input_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """The input size (w, h) in a checkpoint's file name, written height x width as MMPose and this project
    name them (``..._coco-256x192-39b73bd5.pth`` -> (192, 256)); None unless the name holds exactly one."""
    found = set(re.findall(r'(?<!\d)(\d{2,4})x(\d{2,4})(?!\d)', Path(path).stem))
    return (int(next(iter(found))[1]), int(next(iter(found))[0])) if len(found) == 1 else None


def check_input_size(source: str, trained: tuple[int, int] | None, expected: tuple[int, int] | None,
                     basis: str = 'its metadata') -> None:
    """Warn when weights trained at ``trained`` (w, h; known from ``basis``) are loaded into a model built
    for ``expected``."""
    if trained is not None and expected is not None and trained != expected:
        (w, h), (cw, ch) = trained, expected
        warn(f'{source} was trained at input size {w}x{h} (w x h, from {basis}), but the config\'s '
             f'codec.input_size is {cw}x{ch}: keypoints will be off unless the model is fine-tuned at the '
             f'new size; to match, set codec.input_size=({w}, {h})')


def load_checkpoint(model: nn.Module, path_or_state: str | os.PathLike | Mapping[str, Any],
                    map_location: Any = 'cpu', strict: bool = True, prefix: str | None = None,
                    origin: str | None = None, where: str = '') -> LoadReport:
    """Load any recognised checkpoint into ``model`` (converted to this project's naming).

    Args:
        model: the module to fill (a full TopdownPoseEstimator, or a backbone, ...).
        path_or_state: a file path, a loaded checkpoint dict, or a state dict.
        map_location: as ``torch.load``.
        strict: raise :class:`CheckpointError` listing missing/unexpected keys (nothing is loaded then).
        prefix: load only the keys starting with ``prefix`` (stripped), e.g. ``'backbone.'`` to fill a
            backbone from a full-model file; a backbone-only file without the prefix is used as is.
        origin: what named the file, put before it in messages: a config key (``'load_from'``,
            ``'model.backbone.init_cfg.checkpoint'``) or a command-line argument (``'CHECKPOINT'``).
        where: ``model``'s place in the full model (``'backbone.'`` for a backbone's ``init_cfg``), so that
            messages name tensors and their likely cause as in the full model.

    A backbone-only file loads into ``model.backbone`` when ``model`` has one, and a ``backbone.``
    prefix on every key is dropped when ``model`` has no ``backbone``. Reported keys are relative to
    ``model``. ``data_preprocessor.*`` tensors the model does not hold (mean/std in some MMPose files) are
    ignored. Tensor shape mismatches and NaN/inf weights always raise. Weights trained at another input
    size than the model's codec (:func:`trained_input_size`, else :func:`named_input_size`) are loaded with
    a warning (:func:`check_input_size`).
    """
    is_path = isinstance(path_or_state, (str, os.PathLike))
    source = str(path_or_state) if is_path else 'state dict'
    source = f'{origin} {source}' if origin else source
    try:
        checkpoint = read_checkpoint(path_or_state, map_location) if is_path else path_or_state
    except CheckpointError as err:
        raise CheckpointError(f'{origin}: {err}' if origin else str(err)) from err
    state_dict = state_dict_of(checkpoint, source)
    if not is_path:
        check_finite(state_dict, source)
    fmt = detect_format(checkpoint)
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
        raise CheckpointError(_mismatch_message(source, model_sd, state_dict, mismatched,
                                                where + report_prefix))
    if strict and (missing or unexpected):
        common = len(model_sd) - len(missing)
        kind = (f'another architecture: only {common} of the model\'s {len(model_sd)} tensors are in it'
                if common < len(model_sd) / 2 else
                f'{len(missing)} missing and {len(unexpected)} unexpected keys')
        raise CheckpointError(f'{source} (format {fmt!r}) does not match {type(model).__name__}: {kind}; '
                              f'missing: {_some(missing)}; unexpected: {_some(unexpected)}')
    target.load_state_dict(state_dict, strict=False)
    trained, basis = trained_input_size(checkpoint), 'its metadata'
    if trained is None and is_path:
        trained, basis = named_input_size(path_or_state), 'its file name'
    if fmt != 'backbone':
        check_input_size(source, trained, model_input_size(model), basis)
    return LoadReport(format=fmt, naming=naming, missing=missing, unexpected=unexpected, input_size=trained)


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


def load_pretrained(module: nn.Module, init_cfg: Mapping[str, Any], cfg_key: str = 'init_cfg',
                    where: str = '') -> LoadReport:
    """Strictly load ``init_cfg['checkpoint']`` (keys under ``init_cfg['prefix']``) into ``module``.

    The checkpoint is a file path or a model-zoo name (:mod:`models.checkpoints.model_zoo`: found in
    ``pretrained_weight/`` or downloaded there). ``cfg_key`` is where ``init_cfg`` sits in the config
    (``'model.backbone.init_cfg'``) and ``where`` the module's place in the model (``'backbone.'``), for
    messages."""
    cfg = pretrained_cfg(init_cfg)
    path = Path(cfg['checkpoint'])
    if not path.is_file():
        if str(cfg['checkpoint']) not in MODEL_ZOO:
            raise FileNotFoundError(f'{cfg_key}.checkpoint {str(path)!r} ({type(module).__name__} '
                                    'pretrained weights) not found')
        path = resolve_checkpoint(cfg['checkpoint'])
    return load_checkpoint(module, path, map_location=cfg.get('map_location', 'cpu'), strict=True,
                           prefix=cfg.get('prefix'), origin=f'{cfg_key}.checkpoint', where=where)
