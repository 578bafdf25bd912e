"""Optional deployment dependencies, imported on demand with a clear message when missing."""
from __future__ import annotations

import importlib
from types import ModuleType

from utils.errors import MissingDependencyError

_PIP_NAMES = {'onnx': 'onnx', 'onnxruntime': 'onnxruntime', 'onnxscript': 'onnxscript'}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise ImportError saying what needs it and how to install it.

    Args:
        module: importable name, e.g. ``'onnxruntime'`` or ``'onnxruntime.quantization'``.
        purpose: what the caller wanted to do, e.g. ``'ONNX export'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split('.')[0]
        pip_name = _PIP_NAMES.get(top, top)
        raise MissingDependencyError(
            f'{purpose} needs the optional package "{pip_name}" ({err}). Install the deployment extras: '
            f'python -m pip install -r requirements-deploy.txt') from err
