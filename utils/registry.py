"""Registries: map ``type=`` names in config dicts to Python classes and build them.

One registry per kind of component. A registry knows which package defines its members
(``location``) and imports it on first use, so ``MODELS.build(cfg)`` works without the caller
importing ``models`` first.
"""
from __future__ import annotations

import copy
import difflib
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from utils.errors import UserError


class RegistryError(UserError, KeyError):
    """An unknown ``type`` or a malformed config dict given to :meth:`Registry.build`.

    ``path`` is where the failing dict sits in the config (e.g. ``['model', 'head', 'loss']``);
    each enclosing :meth:`Registry.build` call prepends its own part while the error rises.
    """

    def __init__(self, message: str, cfg: Any = None, path: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.cfg = cfg
        self.path = list(path or [])

    def __str__(self) -> str:  # KeyError would quote the message; show it plainly
        where = f' (config path: {_join_path(self.path)})' if self.path else ''
        return self.message + where


class BuildArgumentError(RegistryError, TypeError):
    """A config dict whose arguments do not fit the signature of its ``type``."""


def _join_path(parts: list[str]) -> str:
    return ''.join(p if p.startswith('[') or i == 0 else '.' + p for i, p in enumerate(parts))


def _locate(container: Any, target: Any) -> list[str] | None:
    """Path of ``target`` (by identity) inside nested dicts/lists ``container``."""
    if container is target:
        return []
    if isinstance(container, Mapping):
        items = ((str(k), v) for k, v in container.items())
    elif isinstance(container, (list, tuple)):
        items = ((f'[{i}]', v) for i, v in enumerate(container))
    else:
        return None
    for key, value in items:
        sub = _locate(value, target)
        if sub is not None:
            return [key, *sub]
    return None


class Registry:
    """A named table of buildable classes or functions.

    Args:
        name: what the registry holds, used in error messages (e.g. ``'model'``).
        locations: packages imported before the first lookup so that their
            ``@register_module()`` decorators have run.
    """

    def __init__(self, name: str, locations: tuple[str, ...] = ()) -> None:
        self.name = name
        self.locations = tuple(locations)
        self._modules: dict[str, Callable] = {}
        self._imported = False

    def __repr__(self) -> str:
        return f'Registry({self.name!r}, {len(self._modules)} entries)'

    def _import_locations(self) -> None:
        if not self._imported:
            self._imported = True
            for loc in self.locations:
                importlib.import_module(loc)

    def __contains__(self, name: str) -> bool:
        self._import_locations()
        return name in self._modules

    def __len__(self) -> int:
        self._import_locations()
        return len(self._modules)

    @property
    def names(self) -> list[str]:
        self._import_locations()
        return sorted(self._modules)

    def register_module(self, name: str | None = None, force: bool = False,
                        module: Callable | None = None) -> Callable:
        """Register a class or function, as a decorator or directly (``module=``)."""

        def _register(obj: Callable) -> Callable:
            key = name or obj.__name__
            if not force and key in self._modules and self._modules[key] is not obj:
                raise RegistryError(
                    f'{key!r} is already registered in the {self.name} registry '
                    f'(by {self._modules[key].__module__}); pass force=True to replace it')
            self._modules[key] = obj
            return obj

        if module is not None:
            return _register(module)
        return _register

    def get(self, name: str) -> Callable:
        """Return the registered object called ``name``; raise a helpful error if unknown."""
        self._import_locations()
        if name not in self._modules:
            close = difflib.get_close_matches(name, self._modules, n=3, cutoff=0.5)
            hint = (f'Did you mean: {", ".join(close)}?' if close else
                    f'Registered: {", ".join(sorted(self._modules)) or "(none)"}')
            raise RegistryError(f'{name!r} is not registered in the {self.name} registry. {hint}')
        return self._modules[name]

    def build(self, cfg: Mapping[str, Any], *, cfg_path: str = '', **default_args: Any) -> Any:
        """Build ``cfg['type'](**rest, **default_args)``; ``cfg`` itself is never modified.

        Args:
            cfg: a mapping with a ``type`` key (a registered name, or a class/function).
            cfg_path: where ``cfg`` sits in the whole config (e.g. ``'model'``), for errors.
                Nested builds done by the component's constructor extend it automatically.
            default_args: keyword arguments used where ``cfg`` does not set them.
        """
        base = [cfg_path] if cfg_path else []
        if not isinstance(cfg, Mapping):
            raise RegistryError(f'{self.name} config must be a dict with a "type" key, '
                                f'got {type(cfg).__name__}', cfg, base)
        if 'type' not in cfg:
            raise RegistryError(f'{self.name} config has no "type" key: {dict(cfg)}', cfg, base)
        args = {k: copy.deepcopy(v) for k, v in cfg.items() if k != 'type'}
        for k, v in default_args.items():
            args.setdefault(k, v)
        obj_type = cfg['type']
        if isinstance(obj_type, str):
            try:
                obj_cls = self.get(obj_type)
            except RegistryError as e:
                raise RegistryError(e.message, cfg, base) from None
        elif callable(obj_type):
            obj_cls = obj_type
        else:
            raise RegistryError(f'"type" must be a registered name or a class, got {obj_type!r}',
                                cfg, base)
        try:
            return obj_cls(**args)
        except RegistryError as e:
            inner = _locate(args, e.cfg)
            if inner is not None:  # the failing dict was handed down by this build
                e.cfg, e.path = cfg, base + inner + e.path
            raise
        except TypeError as e:
            try:
                signature = inspect.signature(obj_cls)
            except (TypeError, ValueError):
                raise e from None
            try:
                signature.bind(**args)
            except TypeError as bind_error:  # the config's arguments do not fit: a config mistake
                names = [p for p in signature.parameters if p != 'self']
                close = [m for k in args if k not in signature.parameters
                         for m in difflib.get_close_matches(k, names, n=1, cutoff=0.6)]
                hint = f' Did you mean: {", ".join(close)}?' if close else ''
                raise BuildArgumentError(f'{self.name} {obj_cls.__name__}: {bind_error}.{hint} Its '
                                         f'arguments: {", ".join(names)}', cfg, base) from None
            raise


MODELS = Registry('model', locations=('models',))
CODECS = Registry('codec', locations=('codec',))
DATASETS = Registry('dataset', locations=('datasets',))
TRANSFORMS = Registry('transform', locations=('datasets.transforms',))
ALBUMENTATIONS = Registry('Albumentation transform', locations=('datasets.transforms',))
# batched versions of per-sample transforms, by the per-sample name (Albumentation members: 'Albumentation.X')
BATCHED_PHOTOMETRIC = Registry('batched photometric transform', locations=('datasets.batched.photometric',))
METRICS = Registry('metric', locations=('evaluation',))
DATA_SAMPLERS = Registry('data sampler', locations=('datasets',))
OPTIMIZERS = Registry('optimizer', locations=('optim',))
OPTIM_WRAPPERS = Registry('optimizer wrapper', locations=('optim',))
SCHEDULERS = Registry('scheduler', locations=('optim',))
EMA_MODELS = Registry('EMA model', locations=('optim',))
ALL_REGISTRIES = (MODELS, CODECS, DATASETS, TRANSFORMS, ALBUMENTATIONS, BATCHED_PHOTOMETRIC, METRICS,
                  DATA_SAMPLERS, OPTIMIZERS, OPTIM_WRAPPERS, SCHEDULERS, EMA_MODELS)


def find_registered(name: str) -> Callable | None:
    """The class or function registered as ``name`` in any registry, or None. It imports every registry's
    packages: ``utils/cfg_options.py`` reads the arguments of what it finds (the one lookup from below that
    the layering allows, README "Layers")."""
    return next((registry.get(name) for registry in ALL_REGISTRIES if name in registry), None)
