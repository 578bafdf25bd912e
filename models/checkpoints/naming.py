"""Checkpoint formats and parameter namings: this project's, the original MMPose_Clean project's and
official MMPose 1.x ones.

Formats (:func:`detect_format`, the container):

- ``'ours'``: ``{'state_dict': ..., 'meta': {'mmpose_clean': VERSION, ...}, ...}`` written by
  :func:`models.checkpoints.save_checkpoint` (the trainer adds optimizer/scheduler state beside them);
- ``'mmpose'``: official MMPose 1.x (OpenMMLab) files, ``{'state_dict': ..., 'meta': ...}``, MMPose naming;
- ``'original'``: the original MMPose_Clean project's, a bare state dict or ``{'model': ...}``;
- ``'backbone'``: a backbone-only state dict, with or without the ``backbone.`` prefix.

Namings (:func:`detect_naming`, :func:`convert_state_dict`, the parameter names): ``'original'`` (=
``'ours'``, used by this project's modules) or ``'mmpose'``. They differ for two model families, each with
a :class:`NamingConverter` below, listed in :data:`NAMING_CONVERTERS`: MobileNetV2's blocks and the RLE
head's split ``fc``. All other names (SimCC and regression heads, ShuffleNetV2, the RealNVP flow) are the
same in both.
"""
from __future__ import annotations

import re
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from models.checkpoints.files import CHECKPOINT_MARKER, CheckpointError, StateDict, state_dict_of

FORMATS = ('ours', 'mmpose', 'original', 'backbone')
NAMINGS = ('mmpose', 'original', 'ours')


@dataclass(frozen=True)
class NamingConverter:
    """How one model family's MMPose parameter names map to this project's.

    ``detect`` tells the naming from a state dict's keys (``'mmpose'``, ``'original'`` or None when the
    family is absent or named alike); ``from_mmpose`` / ``to_mmpose`` return a new state dict with the
    family's tensors renamed (or split / merged) and every other entry unchanged.
    """

    name: str
    detect: Callable[[Collection[str]], str | None]
    from_mmpose: Callable[[Mapping[str, torch.Tensor]], StateDict]
    to_mmpose: Callable[[Mapping[str, torch.Tensor]], StateDict]


# ---------------------------------------------------------------------------------------- MobileNetV2
# MMPose: layer{b+1}.{i-1}.conv.{k}.{conv,bn}, k = 0 expand, 1 depthwise, 2 project (blocks without
# expansion: 0 depthwise, 1 project). Ours: block_{b}.{i}.{conv,bn,dw_conv,dw_bn,pw_conv,pw_bn}.
# conv1 / conv2 are named alike. Either may sit under a prefix (``backbone.``).
_MMPOSE_BLOCK = re.compile(r'^(?P<pre>(?:\w+\.)*?)layer(?P<b>\d+)\.(?P<i>\d+)\.conv\.(?P<k>\d+)\.'
                           r'(?P<op>conv|bn)\.(?P<rest>.+)$')
_OURS_BLOCK = re.compile(r'^(?P<pre>(?:\w+\.)*?)block_(?P<b>\d+)\.(?P<i>\d+)\.(?P<stage>dw_|pw_|)'
                         r'(?P<op>conv|bn)\.(?P<rest>.+)$')


def _mbv2_detect(keys: Collection[str]) -> str | None:
    if any(_MMPOSE_BLOCK.match(k) for k in keys):
        return 'mmpose'
    return 'original' if any(_OURS_BLOCK.match(k) for k in keys) else None


def _mbv2_from_mmpose(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    ops_per_block: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for key in state_dict:
        if m := _MMPOSE_BLOCK.match(key):
            ops_per_block[m['pre'], m['b'], m['i']].add(int(m['k']))
    out: StateDict = OrderedDict()
    for key, value in state_dict.items():
        if m := _MMPOSE_BLOCK.match(key):
            stages = ('', 'dw_', 'pw_') if 2 in ops_per_block[m['pre'], m['b'], m['i']] else ('dw_', 'pw_')
            key = (f"{m['pre']}block_{int(m['b']) - 1}.{int(m['i']) + 1}.{stages[int(m['k'])]}{m['op']}."
                   f"{m['rest']}")
        out[key] = value
    return out


def _mbv2_to_mmpose(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    expanded = {(m['pre'], m['b'], m['i']) for k in state_dict
                if (m := _OURS_BLOCK.match(k)) and m['stage'] == ''}
    out: StateDict = OrderedDict()
    for key, value in state_dict.items():
        if m := _OURS_BLOCK.match(key):
            stages = ('', 'dw_', 'pw_') if (m['pre'], m['b'], m['i']) in expanded else ('dw_', 'pw_')
            key = (f"{m['pre']}layer{int(m['b']) + 1}.{int(m['i']) - 1}.conv.{stages.index(m['stage'])}."
                   f"{m['op']}.{m['rest']}")
        out[key] = value
    return out


MOBILENET_V2 = NamingConverter('MobileNetV2', _mbv2_detect, _mbv2_from_mmpose, _mbv2_to_mmpose)


# ------------------------------------------------------------------------------------------- RLE head
# MMPose's RLE head has one ``fc`` (K*4 rows ordered x, y, sigma_x, sigma_y per joint), ours ``fc_coord``
# (K*2 coordinates) and ``fc_sigma`` (K*2 raw sigmas).
FLOW_PREFIX = 'head.loss_module.flow_model.'  # the RealNVP flow of RLELoss: marks an RLE model's state dict


def split_fc(value: Tensor) -> tuple[Tensor, Tensor]:
    """MMPose's ``fc`` weight (4K, C) or bias (4K,), rows x, y, sigma_x, sigma_y per joint -> this
    project's ``fc_coord`` and ``fc_sigma`` tensors, (2K, C) or (2K,) each."""
    per_joint = value.reshape(-1, 4, *value.shape[1:])
    return (per_joint[:, :2].reshape(-1, *value.shape[1:]).clone(),
            per_joint[:, 2:].reshape(-1, *value.shape[1:]).clone())


def merge_fc(coord: Tensor, sigma: Tensor) -> Tensor:
    """The inverse of :func:`split_fc`: ``fc_coord``, ``fc_sigma`` (2K[, C]) -> MMPose's ``fc`` (4K[, C])."""
    per_joint = torch.cat([coord.reshape(-1, 2, *coord.shape[1:]), sigma.reshape(-1, 2, *sigma.shape[1:])], 1)
    return per_joint.reshape(-1, *coord.shape[1:])


def _rle_detect(keys: Collection[str]) -> str | None:
    if 'head.fc.weight' in keys and any(k.startswith(FLOW_PREFIX) for k in keys):
        return 'mmpose'
    return 'original' if 'head.fc_coord.weight' in keys else None


def _rle_from_mmpose(state_dict: Mapping[str, Tensor]) -> StateDict:
    """A whole model's state dict with MMPose's ``head.fc`` split (only RLE ones: those with the flow)."""
    is_rle = any(k.startswith(FLOW_PREFIX) for k in state_dict)
    out: StateDict = OrderedDict()
    for key, value in state_dict.items():
        if is_rle and key in ('head.fc.weight', 'head.fc.bias'):
            suffix = key.rsplit('.', 1)[1]
            out[f'head.fc_coord.{suffix}'], out[f'head.fc_sigma.{suffix}'] = split_fc(value)
        else:
            out[key] = value
    return out


def _rle_to_mmpose(state_dict: Mapping[str, Tensor]) -> StateDict:
    out: StateDict = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith('head.fc_sigma.'):
            continue
        if key.startswith('head.fc_coord.'):
            suffix = key.rsplit('.', 1)[1]
            sigma = state_dict.get(f'head.fc_sigma.{suffix}')
            if sigma is None:
                raise CheckpointError(f'{key} has no matching head.fc_sigma.{suffix} to merge into head.fc')
            out[f'head.fc.{suffix}'] = merge_fc(value, sigma)
        else:
            out[key] = value
    return out


RLE_HEAD = NamingConverter('RLEHead', _rle_detect, _rle_from_mmpose, _rle_to_mmpose)

# Every family whose MMPose names differ from this project's; the functions below apply them in order.
NAMING_CONVERTERS: tuple[NamingConverter, ...] = (MOBILENET_V2, RLE_HEAD)


def detect_naming(state_dict: Mapping[str, Any]) -> str | None:
    """``'mmpose'`` or ``'original'`` from family-specific names; None when no family of
    :data:`NAMING_CONVERTERS` is in the state dict."""
    found = {converter.detect(state_dict.keys()) for converter in NAMING_CONVERTERS}
    for naming in ('mmpose', 'original'):
        if naming in found:
            return naming
    return None


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], src_layout: str,
                       dst_layout: str) -> StateDict:
    """Rename (and for the RLE head split/merge) tensors between namings ``'mmpose'`` and
    ``'original'``/``'ours'`` (the same naming) with :data:`NAMING_CONVERTERS`. Values are
    not modified; the result is a new dict."""
    for name in (src_layout, dst_layout):
        if name not in NAMINGS:
            raise ValueError(f'unknown state-dict layout {name!r}; expected one of {NAMINGS}')
    src = 'original' if src_layout == 'ours' else src_layout
    dst = 'original' if dst_layout == 'ours' else dst_layout
    out: StateDict = OrderedDict(state_dict)
    if src != dst:
        for converter in NAMING_CONVERTERS:
            out = converter.from_mmpose(out) if src == 'mmpose' else converter.to_mmpose(out)
    return out


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
