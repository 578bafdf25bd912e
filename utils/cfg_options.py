"""Strict ``--cfg-options KEY=VALUE`` overrides: what :meth:`utils.config.Config.merge_from_options` runs.

- ``KEY`` must exist: in the config, among the constructor arguments of the ``type`` of the dict it goes
  into (``model.backbone.frozen_stages`` for a MobileNetV2 that does not set it), or among the optional
  keys the training / evaluation code reads with a default (:data:`OPTIONAL_KEYS`). An unknown key is an
  error naming the closest existing keys; ``+KEY=VALUE`` adds a new key deliberately (and replaces an
  existing one without the type check below).
- ``VALUE`` is a Python literal (``2``, ``1e-3``, ``[1, 2]``, ``{'a': 1}``, ``None``, ``True``); anything
  else is a string. It must have the type of the value it replaces (an int for an int, a number for a
  float, a list or tuple for a list or tuple, ...); ``None`` replaces anything and anything replaces
  ``None``. A string replacing a string is taken as typed (``data_root=2017`` stays ``'2017'``).
- A dict merges into the existing dict, unless it holds ``_delete_=True``: then it replaces it, as in
  a config file.
- ``a.0.b`` indexes into a list.
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from utils.config_dict import DELETE_KEY, ConfigDict, ConfigError, merge_dicts, strip_delete
from utils.registry import find_registered

NEW_KEY_PREFIX = '+'


@dataclass(frozen=True)
class CliValue:
    """A ``--cfg-options`` value: ``text`` as typed and ``value``, its parse as a Python literal."""

    text: str
    value: Any


# Keys that the code reads with a default, so a config need not set them (dotted patterns, fnmatch)
OPTIONAL_KEYS: dict[str, tuple[str, ...]] = {
    '': ('load_from', 'resume', 'sync_bn', 'find_unused_parameters', 'stage2_num_epochs', 'log_interval',
         'ema', 'custom_hooks', 'auto_scale_lr', 'randomness', 'checkpoint', 'quantization', 'env_cfg',
         'param_scheduler', 'test_pipeline', 'val_evaluator', 'test_dataloader', 'test_evaluator'),
    '*_dataloader': ('batch_size', 'num_workers', 'persistent_workers', 'pin_memory', 'drop_last',
                     'prefetch_factor', 'sampler'),
    '*_dataloader.sampler': ('type', 'shuffle', 'round_up', 'seed'),
    'train_cfg': ('max_epochs', 'val_interval'),
    'randomness': ('seed', 'deterministic'),
    'env_cfg': ('cudnn_benchmark', 'dist_backend'),
    'checkpoint': ('save_best', 'rule'),
    'auto_scale_lr': ('enable', 'base_batch_size'),
    'model.test_cfg': ('flip_test', 'flip_mode', 'shift_coords', 'shift_heatmap'),
    'optim_wrapper': ('type', 'dtype', 'clip_grad', 'paramwise_cfg', 'accumulative_counts'),
}


def _constructor_keys(node: Mapping) -> set[str] | None:
    """Argument names of the constructor ``node['type']`` names; None if unknown or it takes **kwargs."""
    obj = node.get('type')
    obj = find_registered(obj) if isinstance(obj, str) else obj
    if not callable(obj):
        return None
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def _known_keys(node: Mapping, path: str) -> set[str] | None:
    """Keys ``node`` (at dotted ``path``) may take; None when anything goes."""
    known = set(node)
    if 'type' in node:
        params = _constructor_keys(node)
        if params is None:
            return None
        known |= params
    for pattern, keys in OPTIONAL_KEYS.items():
        if fnmatch.fnmatchcase(path, pattern):
            known |= set(keys)
    return known


def _unknown_key_error(option: str, path: str, key: str, node: Mapping, known: set[str]) -> ConfigError:
    close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
    where = path or 'the config'
    hint = f'closest: {", ".join(close)}' if close else f'it has: {", ".join(sorted(map(str, node))[:12])}'
    return ConfigError(f'--cfg-options {option}: {where} has no key {key!r} ({hint}); '
                       f'to add a new key on purpose write {NEW_KEY_PREFIX}{option}')


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return 'bool (True or False)'
    if isinstance(value, float):
        return 'a number'
    if isinstance(value, Mapping):
        return 'dict'
    if isinstance(value, (list, tuple)):
        return 'list or tuple'
    return type(value).__name__


def _typed(option: str, key: str, old: Any, new: Any, text: str | None) -> Any:
    """``new`` checked against (and converted to) the type of ``old``; ConfigError naming key and type."""
    if old is None or new is None:
        return new
    if isinstance(old, bool):
        ok = isinstance(new, bool)
    elif isinstance(old, int):
        ok = isinstance(new, int) and not isinstance(new, bool)
    elif isinstance(old, float):
        ok = isinstance(new, (int, float)) and not isinstance(new, bool)
        new = float(new) if ok else new
    elif isinstance(old, str):
        if not isinstance(new, str) and text is not None and not isinstance(new, (Mapping, list, tuple)):
            new = text  # a number or word typed where a string is expected: keep what was typed
        ok = isinstance(new, str)
    elif isinstance(old, (list, tuple)):
        ok = isinstance(new, (list, tuple))
        new = type(old)(new) if ok else new
    elif isinstance(old, Mapping):
        ok = isinstance(new, Mapping)
    else:
        ok = True
    if not ok:
        shown = text if text is not None else repr(new)
        raise ConfigError(f'--cfg-options {option}: {key} expects {_type_name(old)} (like its current value '
                          f'{old!r:.60}), got {shown!r}; values are Python literals')
    return new


def _index(node: list, key: str, option: str) -> int:
    if not key.lstrip('-').isdigit() or not -len(node) <= int(key) < len(node):
        raise ConfigError(f'--cfg-options {option}: {key!r} is not an index into a list of length '
                          f'{len(node)}')
    return int(key)


def _set(node: Any, key: str, value: Any, option: str, dotted: str, add: bool, text: str | None) -> None:
    if isinstance(node, list):
        i = _index(node, key, option)
        node[i] = ConfigDict._wrap(value if add else _typed(option, dotted, node[i], value, text))
        return
    if isinstance(value, Mapping) and value.get(DELETE_KEY):
        node[key] = strip_delete(value)
    elif key in node and not add:
        old = node[key]
        new = _typed(option, dotted, old, value, text)
        node[key] = merge_dicts(old, new) if isinstance(new, Mapping) else new
    elif isinstance(value, Mapping) and isinstance(node.get(key), Mapping):
        node[key] = merge_dicts(node[key], value)
    else:
        node[key] = value


def apply_options(cfg: ConfigDict, options: Mapping[str, Any]) -> None:
    """Apply ``{'a.b.c': value or CliValue}`` overrides to ``cfg`` in place (rules: module docstring)."""
    for dotted, raw in options.items():
        text, value = (raw.text, raw.value) if isinstance(raw, CliValue) else (None, raw)
        add = dotted.startswith(NEW_KEY_PREFIX)
        path = dotted[len(NEW_KEY_PREFIX):] if add else dotted
        option = f'{dotted}={text}' if text is not None else dotted
        keys = path.split('.')
        node: Any = cfg
        for i, key in enumerate(keys):
            here = '.'.join(keys[:i])
            if not isinstance(node, (Mapping, list)):
                raise ConfigError(f'--cfg-options {option}: {here} is a {type(node).__name__}, not a dict '
                                  'or list')
            if isinstance(node, Mapping) and key not in node and not add:
                known = _known_keys(node, here)
                if known is not None and key not in known:
                    raise _unknown_key_error(option, here, key, node, known)
            if i == len(keys) - 1:
                _set(node, key, value, option, path, add, text)
            elif isinstance(node, list):
                node = node[_index(node, key, option)]
            else:
                if key not in node:
                    node[key] = ConfigDict()
                node = node[key]
