"""Python-file configs with ``_base_`` inheritance, command-line overrides and dumping.

A config file is Python: every public top-level variable becomes a key. ``_base_`` (a literal path or
list of paths relative to the file's own folder) names files merged first, in order; the child's keys
win. Dicts merge recursively unless the child's dict sets ``_delete_=True``; lists and other values
replace. ``_base_`` is the one way configs share anything: a file runs with its bases' resolved values
and public functions already defined (so ``codec`` or a pipeline builder from a base is simply used,
never imported). Config files run as code: load only trusted ones.
"""
from __future__ import annotations

import argparse
import ast
import os
import pprint
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from utils.cfg_options import CliValue, apply_options
from utils.config_dict import ConfigDict, ConfigError, merge_dicts, to_plain
from utils.output_files import write_text_atomic

BASE_KEY = '_base_'
def _is_config_value(name: str, value: Any) -> bool:
    if name.startswith('_'):
        return False
    return not isinstance(value, (types.ModuleType, types.FunctionType, type))


def _read_source(path: Path) -> tuple[str, Any]:
    """The file's text and its compiled code."""
    try:
        source = path.read_text()
    except OSError as e:
        raise ConfigError(f'cannot read config file {path}: {e.strerror}') from None
    try:
        return source, compile(source, str(path), 'exec')
    except SyntaxError as e:
        raise ConfigError(f'syntax error in config file {path}, line {e.lineno}: {e.msg}: '
                          f'{(e.text or "").strip()}') from None


def _base_paths(path: Path, source: str) -> list[str]:
    """The ``_base_`` entry of a config file, read without running it (it must be a literal)."""
    bases: Any = []
    for node in ast.parse(source, str(path)).body:
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


def _exec_file(path: Path, code: Any, inherited: dict[str, Any]) -> dict[str, Any]:
    """Run one config file with the names its bases define and return its whole namespace."""
    namespace: dict[str, Any] = {**inherited, '__file__': str(path), '__name__': '__config__'}
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
    return namespace


def _load(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Resolve one file: ``(config values, helper functions)`` of it and its ``_base_`` chain.

    The file runs with its bases' merged values and helper functions already defined, so it can
    read them (``codec``) and call them (pipeline builders) without importing anything.
    """
    path = path.resolve()
    if path in chain:
        cycle = ' -> '.join(str(p) for p in (*chain, path))
        raise ConfigError(f'_base_ cycle in configs: {cycle}')
    if not path.is_file():
        parent = f' (named in _base_ of {chain[-1]})' if chain else ''
        raise ConfigError(f'config file not found: {path}{parent}')
    if path.suffix != '.py':
        raise ConfigError(f'config files must be Python (.py): {path}')
    source, code = _read_source(path)
    merged: dict[str, Any] = {}
    helpers: dict[str, Any] = {}
    for base in _base_paths(path, source):
        values, functions = _load(path.parent / base, (*chain, path))
        merged = merge_dicts(merged, values)
        helpers.update(functions)
    namespace = _exec_file(path, code, {**helpers, **merged})
    # a name still bound to the inherited object was not assigned here: the merged value stands
    own = {k: v for k, v in namespace.items()
           if _is_config_value(k, v) and not (k in merged and v is merged[k])}
    helpers.update({k: v for k, v in namespace.items()
                    if isinstance(v, types.FunctionType) and not k.startswith('_')})
    return merge_dicts(merged, own), helpers


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
        cfg = cls(_load(Path(path), ())[0])
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
