"""Python-file configs with ``_base_`` inheritance, command-line overrides and dumping.

A config file is Python: every public top-level variable becomes a key. ``_base_`` (a path or a list
of paths relative to the file's own folder) names files merged first, in order; the child's keys win.
Dicts merge recursively unless the child's dict sets ``_delete_=True``; lists and other values replace.
Config files run as code: load only trusted ones.
"""
from __future__ import annotations

import argparse
import ast
import copy
import os
import pprint
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.errors import UserError
from utils.output_files import write_text_atomic

BASE_KEY = '_base_'
DELETE_KEY = '_delete_'


class ConfigError(UserError, ValueError):
    """A config file that cannot be read, parsed, merged or overridden."""


class ConfigDict(dict):
    """A dict whose keys are also attributes (``cfg.model.head.type``); nested dicts convert."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    @staticmethod
    def _wrap(value: Any) -> Any:
        if isinstance(value, dict) and not isinstance(value, ConfigDict):
            return ConfigDict(value)
        if isinstance(value, list):
            return [ConfigDict._wrap(v) for v in value]
        if isinstance(value, tuple):
            return tuple(ConfigDict._wrap(v) for v in value)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, self._wrap(value))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key '{name}'") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"config has no key '{name}'") from None

    def __deepcopy__(self, memo: dict) -> ConfigDict:
        return ConfigDict({k: copy.deepcopy(v, memo) for k, v in self.items()})

    def update(self, *args: Any, **kwargs: Any) -> None:  # keep wrapping on update()
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def to_dict(self) -> dict:
        """A plain ``dict`` copy (nested ConfigDicts converted too)."""
        return _to_plain(self)


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_plain(v) for v in value)
    return value


def merge_dicts(base: Mapping, child: Mapping) -> dict:
    """Merge ``child`` into a copy of ``base``: dicts recursively, everything else replaced.

    A child dict holding ``_delete_=True`` replaces the base value instead of merging into it.
    """
    merged = {k: copy.deepcopy(v) for k, v in base.items()}
    for key, value in child.items():
        if isinstance(value, Mapping):
            value = dict(value)
            delete = value.pop(DELETE_KEY, False)
            if not delete and isinstance(merged.get(key), Mapping):
                merged[key] = merge_dicts(merged[key], value)
            else:
                merged[key] = strip_delete(value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def strip_delete(value: Any) -> Any:
    """A deep copy of ``value`` without its ``_delete_`` keys."""
    if isinstance(value, Mapping):
        return {k: strip_delete(v) for k, v in value.items() if k != DELETE_KEY}
    if isinstance(value, list):
        return [strip_delete(v) for v in value]
    return copy.deepcopy(value)


def _is_config_value(name: str, value: Any) -> bool:
    if name.startswith('__') or (name.startswith('_') and name != BASE_KEY):
        return False
    return not isinstance(value, (types.ModuleType, types.FunctionType, type))


def _exec_file(path: Path) -> dict:
    """Run one config file and return its variables (``_base_`` included, unresolved)."""
    try:
        source = path.read_text()
    except OSError as e:
        raise ConfigError(f'cannot read config file {path}: {e.strerror}') from None
    try:
        code = compile(source, str(path), 'exec')
    except SyntaxError as e:
        raise ConfigError(f'syntax error in config file {path}, line {e.lineno}: {e.msg}: '
                          f'{(e.text or "").strip()}') from None
    namespace: dict[str, Any] = {'__file__': str(path), '__name__': '__config__'}
    try:
        exec(code, namespace)  # noqa: S102 - config files are trusted Python by design
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
    return {k: v for k, v in namespace.items() if _is_config_value(k, v)}


def _load(path: Path, chain: tuple[Path, ...]) -> dict:
    path = path.resolve()
    if path in chain:
        cycle = ' -> '.join(str(p) for p in (*chain, path))
        raise ConfigError(f'_base_ cycle in configs: {cycle}')
    if not path.is_file():
        parent = f' (named in _base_ of {chain[-1]})' if chain else ''
        raise ConfigError(f'config file not found: {path}{parent}')
    if path.suffix != '.py':
        raise ConfigError(f'config files must be Python (.py): {path}')
    own = _exec_file(path)
    bases = own.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, (list, tuple)) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f'_base_ in {path} must be a path or a list of paths, got {bases!r}')
    merged: dict = {}
    for base in bases:
        merged = merge_dicts(merged, _load(path.parent / base, (*chain, path)))
    return merge_dicts(merged, own)


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
    def fromfile(cls, path: str | os.PathLike) -> Config:
        """Load a Python config file and its ``_base_`` chain.

        Raises:
            ConfigError: a missing file (a base included), a syntax error, an error while running
                the file, or a ``_base_`` cycle; the message names the file (and line).
        """
        cfg = cls(_load(Path(path), ()))
        dict.__setattr__(cfg, 'filename', str(Path(path).resolve()))
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
        from utils.cfg_options import apply_options

        apply_options(self, options)

    def pretty_text(self) -> str:
        """The resolved config as Python source that :meth:`fromfile` loads back to an equal config."""
        lines = ['# Resolved config written by MMPose_Clean. It is Python: load only trusted files.']
        for key, value in self.items():
            lines.append(f'{key} = {pprint.pformat(_to_plain(value), width=100, sort_dicts=False)}')
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


@dataclass(frozen=True)
class CliValue:
    """A ``--cfg-options`` value: ``text`` as typed and ``value``, its parse as a Python literal."""

    text: str
    value: Any


def parse_cfg_options(items: list[str] | None) -> dict[str, CliValue]:
    """Turn ``['a.b=1', 'c=[1, 2]']`` (from ``--cfg-options``) into ``{'a.b': CliValue('1', 1), ...}``."""
    options: dict[str, CliValue] = {}
    for item in items or []:
        key, sep, value = item.partition('=')
        if not sep or not key.strip():
            raise ConfigError(f'--cfg-options expects KEY=VALUE, got {item!r}')
        options[key.strip()] = CliValue(value.strip(), parse_value(value.strip()))
    return options


def add_config_argument(parser: Any, required: bool = True, dest: str = 'config',
                        help: str = 'config file (Python, with _base_ inheritance)') -> None:
    """Add the config file argument every entry point takes: positional first (MMPose's habit), or
    ``--cfg_file CONFIG`` / ``--cfg-file CONFIG`` (the original project's spelling), not both.

    The value lands in ``args.<dest>`` (None when ``required`` is False and neither form is given).
    """
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(dest, nargs='?', default=argparse.SUPPRESS, metavar='CONFIG', help=help)
    group.add_argument('--cfg_file', '--cfg-file', dest=dest, metavar='CONFIG',
                       help='the config file given as an option (alias of the positional CONFIG)')


def add_cfg_options_argument(parser: Any) -> None:
    """Add the shared ``--cfg-options KEY=VALUE ...`` flag to an argparse parser."""
    parser.add_argument(
        '--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
        help='override config entries, e.g. train_dataloader.batch_size=32 '
             'optim_wrapper.optimizer.lr=1e-3 (values are Python literals of the type of the value they '
             'replace; an unknown key is an error, +KEY=VALUE adds a new one)')


def load_config(path: str | os.PathLike, cfg_options: list[str] | None = None) -> Config:
    """``Config.fromfile`` plus ``--cfg-options`` overrides: what every entry script uses."""
    cfg = Config.fromfile(path)
    cfg.merge_from_options(parse_cfg_options(cfg_options))
    return cfg
