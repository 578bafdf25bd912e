"""Read, convert, load and save checkpoints (safely: ``torch.load(weights_only=True)`` only).

Checkpoint formats recognised by :func:`detect_format`:

- ``'ours'``: ``{'state_dict': ..., 'meta': {'mmpose_clean': VERSION, ...}, ...}`` written by
  :func:`save_checkpoint` (the trainer adds optimizer/scheduler state beside them);
- ``'mmpose'``: official MMPose 1.x (OpenMMLab) files, ``{'state_dict': ..., 'meta': ...}``, MMPose naming;
- ``'original'``: the original MMPose_Clean project's, a bare state dict or ``{'model': ...}``;
- ``'backbone'``: a backbone-only state dict, with or without the ``backbone.`` prefix.

Parameter naming (:func:`detect_naming`, :func:`convert_state_dict`) is separate from the container:
``'original'`` (= ``'ours'``, used by this project's modules) or ``'mmpose'``. They differ in

- MobileNetV2 blocks: MMPose ``layer{b+1}.{i-1}.conv.{k}.{conv,bn}.*`` with k = 0 expand, 1 depthwise,
  2 project (blocks without expansion: 0 depthwise, 1 project) <-> ours ``block_{b}.{i}.{conv,bn,
  dw_conv,dw_bn,pw_conv,pw_bn}.*``; ``conv1``/``conv2`` are the same in both.
- The RLE head: MMPose ``head.fc`` Linear(C, 4K) whose output reshapes to (K, 4) = (x, y, sigma_x,
  sigma_y) <-> ours ``head.fc_coord`` and ``head.fc_sigma``, each Linear(C, 2K) reshaping to (K, 2).
  A state dict is treated as an RLE one when it holds ``head.loss_module.flow_model.*`` tensors.
All other names (SimCC and regression heads, ShuffleNetV2, the RealNVP flow) are the same in both.
"""
from __future__ import annotations

import os
import pickle
import re
from collections import OrderedDict, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from utils.errors import UserError
from utils.model_zoo import MODEL_ZOO, resolve_checkpoint
from utils.output_files import atomic_output
from utils.restricted_unpickler import RestrictedPickleModule, safe_globals

CHECKPOINT_MARKER = 'mmpose_clean'
CHECKPOINT_VERSION = 1
FORMATS = ('ours', 'mmpose', 'original', 'backbone')
NAMINGS = ('mmpose', 'original', 'ours')

StateDict = dict[str, torch.Tensor]


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be read, recognised or loaded; the message names the file and keys."""


@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did: the source format/naming and the key differences."""

    format: str
    naming: str | None
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def sniff_non_checkpoint(path: Path) -> str | None:
    """What ``path`` is when its first bytes show it is not a torch checkpoint (a git-LFS pointer, an HTML
    page, an ONNX model, another text file, an empty file), else None."""
    with open(path, 'rb') as f:
        head = f.read(512)
    if not head:
        return 'an empty file'
    if head.startswith(b'PK\x03\x04') or head[:1] == b'\x80':  # torch's zip format, or a legacy pickle
        return None
    if head.startswith(b'version https://git-lfs'):
        return 'a git-LFS pointer file, not the weights: fetch them with `git lfs pull`'
    text = head.decode('utf-8', errors='replace').lstrip().lower()
    if text.startswith(('<!doctype html', '<html', '<?xml', '<head')):
        return 'an HTML/XML page (a failed or redirected download?); download the file again'
    if path.suffix == '.onnx' or b'onnx' in head[:64].lower():
        return 'an ONNX model; pass it where .onnx files are accepted (the demo, init_model)'
    if '\ufffd' not in text and all(c.isprintable() or c in '\r\n\t' for c in text):
        first = text.strip().splitlines()[0][:60] if text.strip() else ''
        return f'a text file (starting {first!r})'
    return None


def read_checkpoint(path: str | os.PathLike, map_location: Any = 'cpu') -> Any:
    """``torch.load(path, weights_only=True)``, allowing numpy arrays/scalars and TorchVersion in the
    metadata.

    A checkpoint that names other Python classes or functions (an MMPose / mmengine training checkpoint
    with ``message_hub`` history buffers, ...) is read again with a restricted unpickler that replaces
    each of those by an inert :class:`Placeholder` (no foreign code runs); its tensors (``state_dict``)
    are usable, the replaced objects are not. Raises FileNotFoundError for a missing file, and
    :class:`CheckpointError` for a damaged/non-torch file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint file not found: {str(path)!r}')
    problem = sniff_non_checkpoint(path)
    if problem is not None:
        raise CheckpointError(f'{str(path)!r} is not a torch checkpoint: it is {problem}')
    try:
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r'GLOBAL (\S+)', str(err)) or re.search(r'but got (<[^>]*>)', str(err))
        if found is None:  # not an allow-list refusal: a damaged or non-torch file
            detail = re.search(r'WeightsUnpickler error:\s*(.*?)\s*(?:Check the documentation|$)', str(err),
                               re.S)
            raise CheckpointError(f'{str(path)!r} is not a readable torch checkpoint: '
                                  f'{detail.group(1) if detail else err}') from err
    except (RuntimeError, EOFError) as err:
        raise CheckpointError(f'{str(path)!r} is not a readable torch checkpoint: {err}') from err
    try:
        return torch.load(path, map_location=map_location, weights_only=False,
                          pickle_module=RestrictedPickleModule)
    except (pickle.UnpicklingError, RuntimeError, EOFError, TypeError, AttributeError) as err:
        raise CheckpointError(f'{str(path)!r} is not a readable torch checkpoint: {err}') from err


def _strip_prefix(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def state_dict_of(checkpoint: Any, source: str = 'checkpoint') -> StateDict:
    """The tensors of a checkpoint: its ``'state_dict'``, its ``'model'``, or the bare mapping itself.

    A ``module.`` prefix on every key (DistributedDataParallel) is removed. ``source`` names the file in
    error messages.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f'{source}: expected a dict, got {type(checkpoint).__name__}')
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    if not checkpoint or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointError(f'{source}: no state dict found; expected a "state_dict" or "model" entry '
                              f'or a mapping of tensors, got keys {list(checkpoint)[:10]}')
    state_dict = OrderedDict(checkpoint)
    if all(k.startswith('module.') for k in state_dict):
        state_dict = OrderedDict(_strip_prefix(state_dict, 'module.'))
    return state_dict


def _is_backbone_only(state_dict: Mapping[str, Any]) -> bool:
    """Every key under ``backbone.``, or none (a whole model always has ``backbone.*`` and more)."""
    with_prefix = sum(k.startswith('backbone.') for k in state_dict)
    return with_prefix in (0, len(state_dict))


def detect_format(checkpoint: Any) -> str:
    """One of :data:`FORMATS` for a loaded checkpoint object (see the module docstring)."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, Mapping) else None
    if isinstance(meta, Mapping) and CHECKPOINT_MARKER in meta:
        return 'ours'
    state_dict = state_dict_of(checkpoint)
    if _is_backbone_only(state_dict):
        return 'backbone'
    if 'state_dict' in checkpoint or detect_naming(state_dict) == 'mmpose':
        return 'mmpose'
    return 'original'


_MMPOSE_BLOCK = re.compile(r'^(?P<pre>(?:\w+\.)*?)layer(?P<b>\d+)\.(?P<i>\d+)\.conv\.(?P<k>\d+)\.'
                           r'(?P<op>conv|bn)\.(?P<rest>.+)$')
_OURS_BLOCK = re.compile(r'^(?P<pre>(?:\w+\.)*?)block_(?P<b>\d+)\.(?P<i>\d+)\.(?P<stage>dw_|pw_|)'
                         r'(?P<op>conv|bn)\.(?P<rest>.+)$')
_RLE_FLOW = 'head.loss_module.flow_model.'


def detect_naming(state_dict: Mapping[str, Any]) -> str | None:
    """``'mmpose'`` or ``'original'`` from MobileNetV2/RLE-specific names; None when no name differs."""
    keys = list(state_dict)
    if any(_MMPOSE_BLOCK.match(k) for k in keys) or (
            'head.fc.weight' in state_dict and any(k.startswith(_RLE_FLOW) for k in keys)):
        return 'mmpose'
    if any(_OURS_BLOCK.match(k) for k in keys) or 'head.fc_coord.weight' in state_dict:
        return 'original'
    return None


def _mmpose_to_ours(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    ops_per_block: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for key in state_dict:
        if m := _MMPOSE_BLOCK.match(key):
            ops_per_block[m['pre'], m['b'], m['i']].add(int(m['k']))
    is_rle = any(k.startswith(_RLE_FLOW) for k in state_dict)
    out: StateDict = OrderedDict()
    for key, value in state_dict.items():
        if m := _MMPOSE_BLOCK.match(key):
            stages = ('', 'dw_', 'pw_') if 2 in ops_per_block[m['pre'], m['b'], m['i']] else ('dw_', 'pw_')
            out[f"{m['pre']}block_{int(m['b']) - 1}.{int(m['i']) + 1}.{stages[int(m['k'])]}{m['op']}."
                f"{m['rest']}"] = value
        elif is_rle and key in ('head.fc.weight', 'head.fc.bias'):
            per_joint = value.reshape(-1, 4, *value.shape[1:])  # (K, 4[, C]) rows: x, y, sigma_x, sigma_y
            suffix = key.rsplit('.', 1)[1]
            out[f'head.fc_coord.{suffix}'] = per_joint[:, :2].reshape(-1, *value.shape[1:]).clone()
            out[f'head.fc_sigma.{suffix}'] = per_joint[:, 2:].reshape(-1, *value.shape[1:]).clone()
        else:
            out[key] = value
    return out


def _ours_to_mmpose(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    expanded = {(m['pre'], m['b'], m['i']) for k in state_dict
                if (m := _OURS_BLOCK.match(k)) and m['stage'] == ''}
    out: StateDict = OrderedDict()
    for key, value in state_dict.items():
        if m := _OURS_BLOCK.match(key):
            stages = ('', 'dw_', 'pw_') if (m['pre'], m['b'], m['i']) in expanded else ('dw_', 'pw_')
            out[f"{m['pre']}layer{int(m['b']) + 1}.{int(m['i']) - 1}.conv.{stages.index(m['stage'])}."
                f"{m['op']}.{m['rest']}"] = value
        elif key.startswith('head.fc_sigma.'):
            continue
        elif key.startswith('head.fc_coord.'):
            suffix = key.rsplit('.', 1)[1]
            sigma = state_dict.get(f'head.fc_sigma.{suffix}')
            if sigma is None:
                raise CheckpointError(f'{key} has no matching head.fc_sigma.{suffix} to merge into head.fc')
            coord = value.reshape(-1, 2, *value.shape[1:])
            merged = torch.cat([coord, sigma.reshape(-1, 2, *sigma.shape[1:])], dim=1)
            out[f'head.fc.{suffix}'] = merged.reshape(-1, *value.shape[1:])
        else:
            out[key] = value
    return out


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], src_layout: str,
                       dst_layout: str) -> StateDict:
    """Rename (and for the RLE head split/merge) tensors between namings ``'mmpose'`` and
    ``'original'``/``'ours'`` (the same naming). Values are not modified; the result is a new dict."""
    for name in (src_layout, dst_layout):
        if name not in NAMINGS:
            raise ValueError(f'unknown state-dict layout {name!r}; expected one of {NAMINGS}')
    src = 'original' if src_layout == 'ours' else src_layout
    dst = 'original' if dst_layout == 'ours' else dst_layout
    if src == dst:
        return OrderedDict(state_dict)
    return _mmpose_to_ours(state_dict) if src == 'mmpose' else _ours_to_mmpose(state_dict)


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
        selected = _strip_prefix(state_dict, prefix)
        if not selected and fmt != 'backbone':
            raise CheckpointError(f'{source}: no keys start with prefix {prefix!r}; '
                                  f'first keys: {list(state_dict)[:5]}')
        state_dict = selected or state_dict
    elif fmt == 'backbone' and isinstance(getattr(model, 'backbone', None), nn.Module):
        target, report_prefix = model.backbone, 'backbone.'
        state_dict = _strip_prefix(state_dict, 'backbone.') or state_dict
    elif fmt == 'backbone' and all(k.startswith('backbone.') for k in state_dict):
        state_dict = _strip_prefix(state_dict, 'backbone.')
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

    The checkpoint is a file path or a model-zoo name (``utils.model_zoo``: found in ``pretrained_weight/``
    or downloaded there)."""
    cfg = pretrained_cfg(init_cfg)
    path = Path(cfg['checkpoint'])
    if not path.is_file():
        if str(cfg['checkpoint']) not in MODEL_ZOO:
            raise FileNotFoundError(f'pretrained checkpoint {str(path)!r} (init_cfg of '
                                    f'{type(module).__name__}) not found')
        path = resolve_checkpoint(cfg['checkpoint'])
    return load_checkpoint(module, path, map_location=cfg.get('map_location', 'cpu'), strict=True,
                           prefix=cfg.get('prefix'))


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any], mark: bool = True) -> None:
    """Write ``payload`` with ``torch.save`` atomically (``utils.output_files.atomic_output``: a temporary
    file in the same folder, then ``os.replace``; permissions from the umask), creating the folder if needed.

    With ``mark`` (this project's format) ``payload`` must hold a ``'state_dict'``; a copy of its
    ``'meta'`` gets ``{CHECKPOINT_MARKER: CHECKPOINT_VERSION}`` added. ``payload`` is not modified.
    """
    path = Path(path)
    if mark:
        if 'state_dict' not in payload:
            raise KeyError(f'save_checkpoint({str(path)!r}): payload needs a "state_dict" entry, '
                           f'got keys {list(payload)}')
        payload = {**payload, 'meta': {**payload.get('meta', {}), CHECKPOINT_MARKER: CHECKPOINT_VERSION}}
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def convert_checkpoint(checkpoint: Any, dst_format: str) -> tuple[Any, bool]:
    """Re-express a loaded checkpoint in format ``'mmpose'``, ``'original'`` or ``'ours'``.

    Returns ``(payload, mark)`` for :func:`save_checkpoint`: mmpose ``{'state_dict', 'meta'}`` in MMPose
    naming; original a bare state dict in original naming; ours ``{'state_dict', 'meta'}`` (marked).
    Metadata of the source (without this project's marker) is kept for mmpose and ours.
    """
    if dst_format not in ('mmpose', 'original', 'ours'):
        raise ValueError(f"unknown checkpoint format {dst_format!r}; expected 'mmpose', 'original' or 'ours'")
    state_dict = state_dict_of(checkpoint)
    src_naming = detect_naming(state_dict) or 'original'
    state_dict = convert_state_dict(state_dict, src_naming, 'mmpose' if dst_format == 'mmpose' else 'ours')
    if dst_format == 'original':
        return state_dict, False
    meta = checkpoint.get('meta') if isinstance(checkpoint, Mapping) else None
    meta = {k: v for k, v in meta.items() if k != CHECKPOINT_MARKER} if isinstance(meta, Mapping) else {}
    return {'state_dict': state_dict, 'meta': meta}, dst_format == 'ours'
