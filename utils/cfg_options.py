"""Strict ``--cfg-options KEY=VALUE`` overrides: what :meth:`utils.config.Config.merge_from_options` runs.

- ``KEY`` must exist: in the config, among the constructor arguments of the ``type`` of the dict it goes
  into (``model.backbone.frozen_stages`` for a MobileNetV2 that does not set it), or among the optional
  keys the training / evaluation code reads with a default (:data:`OPTIONAL_KEYS`). An unknown key is an
  error naming the closest existing keys; ``+KEY=VALUE`` adds a new key deliberately (and replaces an
  existing one without the type check below).
- ``VALUE`` is a Python literal (``2``, ``1e-3``, ``[1, 2]``, ``{'a': 1}``, ``None``, ``True``); anything
  else is a string. Its type is checked: where the dict it goes into has a registered ``type`` whose
  argument ``KEY`` has a type annotation, the annotation decides (``rotate_factor: float`` takes ``30.5``
  and ``30``); otherwise it must have the type of the value it replaces (an int for an int, a number for
  a float, a list or tuple for a list or tuple, ...). An int is accepted where a float is expected, never
  the reverse. ``None`` replaces anything and anything replaces ``None``. A string replacing a string
  is taken as typed (``data_root=2017`` stays ``'2017'``).
- A dict merges into the existing dict, unless it holds ``_delete_=True``: then it replaces it, as in
  a config file.
- ``a.0.b`` indexes into a list.

:func:`override_variable` applies the same overrides to one top-level variable while a config file runs
(leniently: a key the partial value lacks is left to the final, strict pass), so that the entries a file
builds from ``codec`` or ``data_root`` are built from the overridden value (``utils/config.py``).
"""
from __future__ import annotations

import collections.abc
import copy
import difflib
import fnmatch
import inspect
import sys
import types
import typing
from collections.abc import Callable, Mapping
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
    'env_cfg': ('cudnn_benchmark', 'dist_backend', 'dist_timeout', 'dist_cfg'),
    'checkpoint': ('save_best', 'rule'),
    'auto_scale_lr': ('enable', 'base_batch_size'),
    'model.test_cfg': ('flip_test', 'flip_mode', 'shift_coords', 'shift_heatmap'),
    'optim_wrapper': ('type', 'dtype', 'clip_grad', 'paramwise_cfg', 'accumulative_counts'),
}


def _constructor(node: Mapping) -> tuple[Callable, dict[str, inspect.Parameter]] | None:
    """The callable ``node['type']`` names and its parameters; None if unknown or not inspectable."""
    obj = node.get('type')
    obj = find_registered(obj) if isinstance(obj, str) else obj
    if not callable(obj):
        return None
    try:
        return obj, dict(inspect.signature(obj).parameters)
    except (TypeError, ValueError):
        return None


def _constructor_keys(node: Mapping) -> set[str] | None:
    """Argument names of the constructor ``node['type']`` names; None if unknown or it takes **kwargs."""
    found = _constructor(node)
    if found is None or any(p.kind is p.VAR_KEYWORD for p in found[1].values()):
        return None
    return set(found[1])


def _argument_annotation(node: Any, key: str) -> tuple[Any, str] | None:
    """(evaluated annotation, description) of argument ``key`` of the ``type`` of dict ``node``, or None
    when ``node`` has no registered type, the type no such annotated argument, or the annotation cannot
    be evaluated."""
    found = _constructor(node) if isinstance(node, Mapping) else None
    param = found[1].get(key) if found else None
    if param is None or param.annotation is param.empty:
        return None
    obj, annotation = found[0], param.annotation
    if isinstance(annotation, str):  # `from __future__ import annotations`: evaluate in its module
        module = sys.modules.get(getattr(obj, '__module__', None) or '')
        try:
            annotation = eval(annotation, dict(vars(module)) if module else {})  # noqa: S307 - our own code
        except Exception:  # noqa: BLE001 - a name only imported for type checking: fall back
            return None
    shown = param.annotation if isinstance(param.annotation, str) else inspect.formatannotation(annotation)
    return annotation, f"{getattr(obj, '__name__', obj)}'s argument {key}: {shown}"


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


def _kind(value: Any) -> str:
    """The kind of a config value the type rules talk about."""
    if isinstance(value, bool):
        return 'bool'
    if isinstance(value, (int, float, str)):
        return type(value).__name__
    if isinstance(value, (list, tuple)):
        return 'seq'
    if isinstance(value, Mapping):
        return 'map'
    return 'none' if value is None else 'other'


_KIND_NAMES = {'bool': 'bool (True or False)', 'int': 'int', 'float': 'a number', 'str': 'str',
               'seq': 'list or tuple', 'map': 'dict', 'none': 'None'}


def _annotation_kinds(annotation: Any) -> frozenset[str] | None:
    """The kinds of value an annotation admits; None where it cannot tell (``Any``, a class, a callable)."""
    if annotation is None or annotation is type(None):
        return frozenset({'none'})
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        parts = [_annotation_kinds(a) for a in typing.get_args(annotation)]
        return None if any(p is None for p in parts) else frozenset().union(*parts)
    if origin is typing.Literal:
        kinds = frozenset(_kind(a) for a in typing.get_args(annotation))
        return None if 'other' in kinds else kinds
    base = origin or annotation
    if base in (bool, int, float, str):
        return frozenset({base.__name__})
    if isinstance(base, type) and not issubclass(base, str):
        if issubclass(base, collections.abc.Sequence):
            return frozenset({'seq'})
        if issubclass(base, Mapping):
            return frozenset({'map'})
    return None


def _value_kinds(old: Any) -> frozenset[str] | None:
    """The kinds of value that may replace ``old``; None for anything."""
    kind = _kind(old)
    return None if kind in ('none', 'other') else frozenset({kind})


def _typed(option: str, key: str, old: Any, new: Any, text: str | None,
           argument: tuple[Any, str] | None = None) -> Any:
    """``new`` checked against what ``key`` takes: the annotation of the constructor ``argument``
    (:func:`_argument_annotation`) where known, else the type of ``old``; an int becomes a float where a
    float is expected and a list a tuple where a tuple is. ConfigError naming the key and the type."""
    if new is None:
        return new
    expected = _annotation_kinds(argument[0]) if argument is not None else None
    why = f'as {argument[1]}' if expected is not None else f'like its current value {old!r:.60}'
    if expected is None:
        expected = _value_kinds(old)
    if expected is None:
        return new
    if 'str' in expected and _kind(new) not in expected and text is not None \
            and _kind(new) not in ('seq', 'map'):
        new = text  # a number or word typed where a string is expected: keep what was typed
    kind = _kind(new)
    if kind == 'int' and 'float' in expected and 'int' not in expected:
        new, kind = float(new), 'float'
    if kind not in expected:
        shown = text if text is not None else repr(new)
        wanted = ' or '.join(_KIND_NAMES[k] for k in sorted(expected))
        raise ConfigError(f'--cfg-options {option}: {key} expects {wanted} ({why}), got {shown!r}; '
                          'values are Python literals')
    if kind == 'seq' and isinstance(old, (list, tuple)):
        new = type(old)(new)
    return new


def _index(node: list, key: str, option: str) -> int:
    if not key.lstrip('-').isdigit() or not -len(node) <= int(key) < len(node):
        raise ConfigError(f'--cfg-options {option}: {key!r} is not an index into a list of length '
                          f'{len(node)}')
    return int(key)


def _set(node: Any, key: str, value: Any, option: str, dotted: str, add: bool, text: str | None) -> None:
    value = copy.deepcopy(value)  # the same override may be applied in several places
    if isinstance(node, list):
        i = _index(node, key, option)
        node[i] = ConfigDict._wrap(value if add else _typed(option, dotted, node[i], value, text))
        return
    if isinstance(value, Mapping) and value.get(DELETE_KEY):
        node[key] = strip_delete(value)
    elif add:
        both_dicts = isinstance(value, Mapping) and isinstance(node.get(key), Mapping)
        node[key] = merge_dicts(node[key], value) if both_dicts else value
    else:
        old = node.get(key)
        new = _typed(option, dotted, old, value, text, _argument_annotation(node, key))
        node[key] = merge_dicts(old, new) if isinstance(new, Mapping) and isinstance(old, Mapping) else new


def _apply(cfg: Mapping, dotted: str, raw: Any, lenient: bool) -> None:
    """Apply one override; ``lenient``: skip it where ``cfg`` lacks its path or the value does not fit
    (a partial dict in a config file), instead of raising."""
    text, value = (raw.text, raw.value) if isinstance(raw, CliValue) else (None, raw)
    add = dotted.startswith(NEW_KEY_PREFIX)
    path = dotted[len(NEW_KEY_PREFIX):] if add else dotted
    option = f'{dotted}={text}' if text is not None else dotted
    keys = path.split('.')
    node: Any = cfg
    try:
        for i, key in enumerate(keys):
            here = '.'.join(keys[:i])
            if not isinstance(node, (Mapping, list)):
                raise ConfigError(f'--cfg-options {option}: {here} is a {type(node).__name__}, not a dict '
                                  'or list')
            if isinstance(node, Mapping) and key not in node and (lenient and (not add or i < len(keys) - 1)):
                return
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
    except ConfigError:
        if not lenient:
            raise


def apply_options(cfg: ConfigDict, options: Mapping[str, Any]) -> None:
    """Apply ``{'a.b.c': value or CliValue}`` overrides to ``cfg`` in place (rules: module docstring)."""
    for dotted, raw in options.items():
        _apply(cfg, dotted, raw, lenient=False)


def option_variable(dotted: str) -> str:
    """The top-level variable an override key is under: ``codec`` for ``codec.input_size`` or ``+codec.x``."""
    return dotted.removeprefix(NEW_KEY_PREFIX).split('.')[0]


def override_variable(name: str, value: Any, options: Mapping[str, Any]) -> Any:
    """A copy of ``value``, the value of top-level variable ``name`` just assigned in a config file,
    with the ``options`` under ``name`` applied where they fit (see :func:`_apply`)."""
    holder = {name: copy.deepcopy(value)}
    for dotted, raw in options.items():
        if option_variable(dotted) == name:
            _apply(holder, dotted, raw, lenient=True)
    return holder[name]
