"""The transform interface and :class:`Compose`, which chains transforms built from config dicts."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from utils.registry import TRANSFORMS


class BaseTransform:
    """A pipeline step: ``transform(results) -> results`` (or ``None`` to drop the sample).

    ``results`` is the per-sample dict of the data contract (see the repository README).
    """

    def transform(self, results: dict) -> dict | None:
        raise NotImplementedError

    def __call__(self, results: dict) -> dict | None:
        return self.transform(results)

    def __repr__(self) -> str:
        args = ', '.join(f'{k}={v!r}' for k, v in vars(self).items() if not k.startswith('_'))
        return f'{type(self).__name__}({args})'


class Compose:
    """Run transforms in order; stop and return ``None`` as soon as one returns ``None``.

    Args:
        transforms: transform instances, callables, or config dicts built with ``TRANSFORMS``.
    """

    def __init__(self, transforms: Sequence[Mapping[str, Any] | Callable] | None) -> None:
        self.transforms: list[Callable] = []
        for i, t in enumerate(transforms or []):
            if isinstance(t, Mapping):
                t = TRANSFORMS.build(t, cfg_path=f'pipeline[{i}]')
            elif not callable(t):
                raise TypeError(f'pipeline[{i}] must be a dict or a callable, got {type(t).__name__}')
            self.transforms.append(t)

    def __call__(self, results: dict) -> dict | None:
        for t in self.transforms:
            results = t(results)
            if results is None:
                return None
        return results

    def __repr__(self) -> str:
        inner = ''.join(f'\n    {t!r},' for t in self.transforms)
        return f'Compose([{inner}\n])'
