"""What checkpoint unpickling may resolve, and a restricted unpickler for checkpoints that name classes
this project does not know (training runs' optimizer / message-hub state).

:func:`safe_globals` are the plain-data types allowed beyond torch's weights-only allow-list.
``torch.load(..., weights_only=False, pickle_module=RestrictedPickleModule)`` resolves only allow-listed
globals (torch's plus :func:`safe_globals`); every other global becomes a fresh :class:`Placeholder`
subclass, so the unpickler's calls to it (REDUCE, NEWOBJ, BUILD) only record data: no code named by the
file runs.
"""
from __future__ import annotations

import functools
import pickle
from typing import Any

import numpy as np
from numpy._core import multiarray as np_multiarray
from torch.torch_version import TorchVersion


def safe_globals() -> list[Any]:
    """Plain-data types allowed in checkpoint metadata beyond torch's own: numpy arrays/scalars/dtypes
    (numpy 1.x and 2.x pickles) and ``torch.torch_version.TorchVersion`` (a ``str`` subclass that training
    scripts save as ``torch.__version__``)."""
    names = ('numpy.core.multiarray', 'numpy._core.multiarray')
    allowed: list[Any] = [np.ndarray, np.dtype, TorchVersion]
    for module in names:
        allowed += [(np_multiarray._reconstruct, f'{module}._reconstruct'),
                    (np_multiarray.scalar, f'{module}.scalar')]
    allowed += [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith('DType')]
    return allowed


class Placeholder:
    """Stands in for a class or function a checkpoint names but this project does not allow (e.g. an
    mmengine ``HistoryBuffer`` in ``message_hub``, or ``os.system`` in a malicious payload).

    The unpickler creates and fills placeholders instead of the real objects: it records the arguments
    and state it is given and runs nothing. ``target`` is the dotted name of the global it replaces.
    """

    target = '?'

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state, self.items = args, kwargs, None, []

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: Any) -> None:
        self.items.extend(values)

    def __repr__(self) -> str:
        return f'<placeholder for {self.target}>'


@functools.cache
def _allowed_globals() -> dict[str, Any]:
    """``'module.name' -> object`` the unpickler may resolve: torch's weights-only allow-list plus
    :func:`safe_globals`."""
    from torch import _weights_only_unpickler

    allowed = dict(_weights_only_unpickler._get_allowed_globals())
    for entry in safe_globals():
        obj, name = entry if isinstance(entry, tuple) else (entry, f'{entry.__module__}.{entry.__qualname__}')
        allowed[name] = obj
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves allow-listed globals only; every other global becomes a fresh
    :class:`Placeholder` subclass, so calling it (REDUCE, NEWOBJ, BUILD) only records data."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_globals().get(f'{module}.{name}')
        if allowed is not None:
            return allowed
        return type(f'Placeholder_{name}', (Placeholder,), {'target': f'{module}.{name}'})


class RestrictedPickleModule:
    """The ``pickle_module`` handed to ``torch.load``: every unpickling (the legacy format's header
    records too) goes through :class:`RestrictedUnpickler`."""

    Unpickler = RestrictedUnpickler
    __name__ = 'restricted_pickle'

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return RestrictedUnpickler(file, **kwargs).load()
