"""Python-file configs with ``_base_`` inheritance, command-line overrides and dumping.

A config file is Python: every public top-level variable becomes a key. ``_base_`` (a literal path or
list of paths relative to the file's own folder) names files merged first, in order; the child's keys
win. Dicts merge recursively unless the child's dict sets ``_delete_=True``; lists and other values
replace. ``_base_`` is the one way configs share anything: a file runs with its bases' resolved values
already defined (so ``codec`` from a base is simply used, never imported). Config files are data written
as Python (no functions: MMPose's habit), but they run as code: load only trusted ones.

Overrides (``--cfg-options``, :meth:`Config.fromfile`) apply while the files run: right after a statement
assigns a top-level variable that an override names (``codec`` for ``codec.input_size=(192, 256)``), so
that everything built from it later (pipelines, head, evaluator paths) follows; then strictly to the
resolved config (rules in ``utils/cfg_options.py``).
"""
from __future__ import annotations

import ast
import os
import pprint
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.cfg_options import CliValue, apply_options, option_variable, override_variable
from utils.config_dict import ConfigDict, ConfigError, merge_dicts, to_plain
from utils.config_stage2 import (
    HOOKS,
    STAGE2,
    TRACKED,
    SetBy,
    holds,
    read_pipeline_switch_hook,
    stage2_left_behind,
)
from utils.errors import warn
from utils.output_files import write_text_atomic

BASE_KEY = '_base_'
_UNBOUND = object()


def _is_config_value(name: str, value: Any) -> bool:
    if name.startswith('_'):
        return False
    return not isinstance(value, (types.ModuleType, types.FunctionType, type))


def _parse(path: Path) -> ast.Module:
    """The file's syntax tree."""
    try:
        source = path.read_text()
    except OSError as e:
        raise ConfigError(f'cannot read config file {path}: {e.strerror}') from None
    try:
        return ast.parse(source, str(path))
    except SyntaxError as e:
        raise ConfigError(f'syntax error in config file {path}, line {e.lineno}: {e.msg}: '
                          f'{(e.text or "").strip()}') from None


def _base_paths(path: Path, tree: ast.Module) -> list[str]:
    """The ``_base_`` entry of a config file, read without running it (it must be a literal)."""
    bases: Any = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == BASE_KEY for t in node.targets):
            try:
                bases = ast.literal_eval(node.value)
            except ValueError:
                raise ConfigError(f'_base_ in {path}, line {node.lineno} must be a literal path or '
                                  'list of paths') from None
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, (list, tuple)) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f'_base_ in {path} must be a path or a list of paths, got {bases!r}')
    return list(bases)


def _target_roots(target: ast.expr) -> set[str]:
    """The variables an assignment target binds or changes in place: ``a`` for ``a``, ``a['k']``, ``a.b``."""
    if isinstance(target, (ast.Tuple, ast.List)):
        return set().union(*(_target_roots(t) for t in target.elts))
    while isinstance(target, (ast.Subscript, ast.Attribute, ast.Starred)):
        target = target.value
    return {target.id} if isinstance(target, ast.Name) else set()


def _assigned_roots(stmt: ast.stmt) -> set[str]:
    """The variables a top-level statement assigns or changes in place (``a = ..``, ``a['k'] += ..``)."""
    if isinstance(stmt, ast.Assign):
        return set().union(*(_target_roots(t) for t in stmt.targets))
    if isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
        return _target_roots(stmt.target)
    return set()


def _exec_file(path: Path, tree: ast.Module, inherited: dict[str, Any],
               options: Mapping[str, Any]) -> dict[str, Any]:
    """Run one config file, statement by statement, with the values its bases define; return its whole
    namespace. Right after a statement assigns a variable that ``options`` override (``codec`` for
    ``codec.input_size=...``), the override is applied to it, so the later statements build on the new
    value."""
    namespace: dict[str, Any] = {**inherited, '__file__': str(path), '__name__': '__config__'}
    overridden = {option_variable(k) for k in options}
    for stmt in tree.body:
        before = {name: namespace.get(name, _UNBOUND) for name in overridden}
        try:
            exec(compile(ast.Module([stmt], type_ignores=[]), str(path), 'exec'),  # noqa: S102 - trusted
                 namespace)
        except Exception as e:
            tb = e.__traceback__
            line = None
            while tb is not None:
                if tb.tb_frame.f_code.co_filename == str(path):
                    line = tb.tb_lineno
                tb = tb.tb_next
            at = f', line {line}' if line else ''
            raise ConfigError(f'error while running config file {path}{at}: '
                              f'{type(e).__name__}: {e}') from e
        changed = _assigned_roots(stmt)
        for name in overridden:
            if name in namespace and (namespace[name] is not before[name] or name in changed):
                namespace[name] = override_variable(name, namespace[name], options)
    return namespace


@dataclass
class _Loaded:
    """A resolved file: its values and, for the keys stage 2 is checked on, the file that set each last."""

    values: dict[str, Any]
    set_by: SetBy = field(default_factory=dict)


def _load(path: Path, chain: tuple[Path, ...], options: Mapping[str, Any], counter: list[int]) -> _Loaded:
    """Resolve one file and its ``_base_`` chain. The file runs with its bases' merged values already
    defined, so it reads them (``codec``, ``data_root``) without importing anything."""
    given, path = path, path.resolve()
    if path in chain:
        cycle = ' -> '.join(str(p) for p in (*chain, path))
        raise ConfigError(f'_base_ cycle in configs: {cycle}')
    parent = f' (named in _base_ of {chain[-1]})' if chain else ''
    if path.is_dir():
        raise ConfigError(f'config {given} is a folder; expected a .py config file{parent}')
    if not path.is_file():
        raise ConfigError(f'config file not found: {path}{parent}')
    if path.suffix != '.py':
        raise ConfigError(f'config files must be Python (.py): {path}')
    tree = _parse(path)
    merged = _Loaded({})
    for base in _base_paths(path, tree):
        loaded = _load(path.parent / base, (*chain, path), options, counter)
        merged = _Loaded(merge_dicts(merged.values, loaded.values), {**merged.set_by, **loaded.set_by})
    namespace = _exec_file(path, tree, merged.values, options)
    # a name still bound to the inherited object was not assigned here: the merged value stands
    own = {k: v for k, v in namespace.items()
           if _is_config_value(k, v) and not (k in merged.values and v is merged.values[k])}
    counter[0] += 1
    set_here = {key: (counter[0], path) for key in TRACKED if holds(own, key)}
    return _Loaded(merge_dicts(merged.values, own), {**merged.set_by, **set_here})


def _literal(node: ast.AST) -> Any:
    """A Python literal, where ``dict(a=1, ...)`` (as config files write dicts) counts as one."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict' \
            and not node.args and all(k.arg is not None for k in node.keywords):
        return {k.arg: _literal(k.value) for k in node.keywords}
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)


def parse_value(text: str) -> Any:
    """Parse a command-line value as a Python literal (``dict(a=1)`` included); anything else stays a
    string (``true``/``false``/``none``/``null`` in any case are booleans / None)."""
    try:
        return _literal(ast.parse(text, mode='eval').body)
    except (ValueError, SyntaxError, TypeError):
        low = text.lower()
        if low in ('true', 'false'):
            return low == 'true'
        if low in ('none', 'null'):
            return None
        return text


class Config(ConfigDict):
    """A resolved config: a :class:`ConfigDict` that remembers the file it came from."""

    filename: str | None = None

    @classmethod
    def fromfile(cls, path: str | os.PathLike, options: Mapping[str, Any] | None = None) -> Config:
        """Load a Python config file and its ``_base_`` chain, with ``{'a.b.c': value or CliValue}``
        overrides (:func:`parse_cfg_options`).

        An override applies where its top-level variable is assigned, in every file of the chain, so
        that what a file builds from it follows (``codec.input_size`` reaches the pipelines and the
        head); then, strictly, to the resolved config (:meth:`merge_from_options`). MMPose's
        ``PipelineSwitchHook`` is read as ``stage2_num_epochs`` + ``pipeline_stage2``, and a stage-1 training
        pipeline changed without its stage-2 pipeline is logged as a warning (``utils/config_stage2.py``).

        Raises:
            ConfigError: a missing file (a base included), a syntax error, an error while running
                the file, a ``_base_`` cycle (the message names the file and line), or an override
                that does not fit (naming the key).
        """
        options = dict(options or {})
        loaded = _load(Path(path), (), options, [0])
        cfg = cls(loaded.values)
        cfg.merge_from_options(options)
        dict.__setattr__(cfg, 'filename', str(Path(path).resolve()))
        set_by = dict(loaded.set_by)
        if read_pipeline_switch_hook(cfg) and HOOKS in set_by:
            set_by[STAGE2] = set_by[HOOKS]
        warning = stage2_left_behind(cfg, set_by, options)
        if warning:
            warn(warning)
        return cfg

    @classmethod
    def fromstring(cls, text: str, directory: str | os.PathLike = '.') -> Config:
        """Load config source text as if it were a file in ``directory`` (bases resolve there)."""
        import tempfile

        with tempfile.NamedTemporaryFile('w', suffix='.py', dir=directory, delete=False) as f:
            f.write(text)
        try:
            cfg = cls.fromfile(f.name)
        finally:
            os.unlink(f.name)
        dict.__setattr__(cfg, 'filename', None)
        return cfg

    def merge_from_options(self, options: Mapping[str, Any]) -> None:
        """Apply ``{'a.b.c': value}`` overrides in place, strictly: an unknown key or a value of another
        type is a :class:`ConfigError`; ``+a.b`` adds a new key; a dict value merges unless it holds
        ``_delete_=True``. Rules in ``utils/cfg_options.py``."""
        apply_options(self, options)

    def pretty_text(self) -> str:
        """The resolved config as Python source that :meth:`fromfile` loads back to an equal config."""
        lines = ['# Resolved config written by MMPose_Clean. It is Python: load only trusted files.']
        for key, value in self.items():
            lines.append(f'{key} = {pprint.pformat(to_plain(value), width=100, sort_dicts=False)}')
        return '\n'.join(lines) + '\n'

    def dump(self, path: str | os.PathLike) -> None:
        """Write the fully resolved config as a loadable ``.py`` file."""
        text = self.pretty_text()
        try:
            ast.parse(text)
        except SyntaxError as e:
            raise ConfigError(
                f'config holds values that cannot be written as Python literals: {e}') from None
        write_text_atomic(path, text)


def parse_cfg_options(items: list[str] | None) -> dict[str, CliValue]:
    """Turn ``['a.b=1', 'c=[1, 2]']`` (from ``--cfg-options``) into ``{'a.b': CliValue('1', 1), ...}``."""
    options: dict[str, CliValue] = {}
    for item in items or []:
        key, sep, value = item.partition('=')
        if not sep or not key.strip():
            raise ConfigError(f'--cfg-options expects KEY=VALUE, got {item!r}')
        options[key.strip()] = CliValue(value.strip(), parse_value(value.strip()))
    return options


SECTIONS = {  # what the top-level sections of a config are, for messages
    'model': 'the network', 'codec': 'the input size and target encoding',
    'train_dataloader': 'the training data', 'val_dataloader': 'the validation data',
    'test_dataloader': 'the test data', 'val_evaluator': 'the metric', 'optim_wrapper': 'the optimizer',
    'train_cfg': 'the number of epochs', 'val_pipeline': 'the validation transforms',
}


def _first_missing(cfg: Mapping[str, Any], key: str) -> str | None:
    """The shortest part of the dotted ``key`` (``'val_dataloader.dataset'``) that ``cfg`` does not set (or
    sets to None): ``'val_dataloader'`` when that is missing; None when all of ``key`` is set."""
    node: Any = cfg
    parts = key.split('.')
    for depth, part in enumerate(parts):
        if not isinstance(node, Mapping) or node.get(part) is None:
            return '.'.join(parts[:depth + 1])
        node = node[part]
    return None


def require_sections(cfg: Mapping[str, Any], needs: list[str | tuple[str, ...]], command: str) -> None:
    """Check that ``cfg`` defines every section ``command`` needs, before any work.

    Args:
        cfg: a loaded config (its ``filename`` names it in the message).
        needs: dotted keys (``'model'``, ``'val_dataloader.dataset'``), checked in order; a tuple holds
            alternatives, one of which is enough (``('val_dataloader.dataset.pipeline', 'val_pipeline')``).
        command: what needs them, for the message (``'val.py'``).

    Raises:
        ConfigError: one line naming the config file, the first missing section (its first missing part,
            and what it is), the command, and the top-level keys the config does define.
    """
    for need in needs:
        missing = [_first_missing(cfg, key) for key in ((need,) if isinstance(need, str) else need)]
        if None in missing:
            continue
        what = ' or '.join(missing)
        about = SECTIONS.get(missing[0]) if len(missing) == 1 else None
        defined = [k for k in cfg if not k.startswith('_')]
        listed = ', '.join(defined[:12]) + (', ...' if len(defined) > 12 else '') or 'nothing'
        source = getattr(cfg, 'filename', None) or 'the config'
        raise ConfigError(f'{source}: {command} needs {what}{f" ({about})" if about else ""}, which this '
                          f'config does not define (it defines: {listed})')


def load_config(path: str | os.PathLike, cfg_options: list[str] | None = None) -> Config:
    """``Config.fromfile`` with ``--cfg-options`` overrides: what every entry script uses."""
    return Config.fromfile(path, parse_cfg_options(cfg_options))
