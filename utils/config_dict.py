"""The dict type every config is made of, its merge rules (``_delete_``) and the config error.

Kept apart from :mod:`utils.config` (reading config files) so that :mod:`utils.cfg_options` (command-line
overrides) builds on it without importing the file reader back.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from utils.errors import UserError

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
        return to_plain(self)


def to_plain(value: Any) -> Any:
    """``value`` with every nested dict (ConfigDict included) as a plain dict; lists and tuples kept."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_plain(v) for v in value)
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
