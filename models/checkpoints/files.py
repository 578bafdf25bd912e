"""Checkpoint files: reading them safely (``torch.load(weights_only=True)``, else a restricted unpickler
that runs no code), writing them atomically, and finding their tensors."""
from __future__ import annotations

import os
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from models.checkpoints.unpickler import Placeholder, RestrictedPickleModule, safe_globals
from utils.errors import UserError
from utils.output_files import atomic_output

CHECKPOINT_MARKER = 'mmpose_clean'  # in ``meta`` of the files this project writes
CHECKPOINT_VERSION = 1

StateDict = dict[str, torch.Tensor]
SAVE_WEIGHTS_HINT = "save the weights instead: torch.save({'state_dict': model.state_dict()}, path)"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be read, recognised or loaded; the message names the file and keys."""


def sniff_non_checkpoint(path: Path) -> str | None:
    """What ``path`` is when its first bytes show it is not a torch checkpoint (a git-LFS pointer, an HTML
    page, an ONNX model, another text file, an empty file), else None."""
    with open(path, 'rb') as f:
        head = f.read(512)
    if not head:
        return 'an empty file'
    if head.startswith(b'PK\x03\x04') or head[:1] == b'\x80':  # torch's zip format, or a legacy pickle
        return None
    if head.startswith(b'version https://git-lfs'):
        return 'a git-LFS pointer file, not the weights: fetch them with `git lfs pull`'
    text = head.decode('utf-8', errors='replace').lstrip().lower()
    if text.startswith(('<!doctype html', '<html', '<?xml', '<head')):
        return 'an HTML/XML page (a failed or redirected download?); download the file again'
    if path.suffix == '.onnx' or b'onnx' in head[:64].lower():
        return 'an ONNX model; pass it where .onnx files are accepted (the demo, init_model)'
    if '\ufffd' not in text and all(c.isprintable() or c in '\r\n\t' for c in text):
        first = text.strip().splitlines()[0][:60] if text.strip() else ''
        return f'a text file (starting {first!r})'
    return None


def read_checkpoint(path: str | os.PathLike, map_location: Any = 'cpu') -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``, allowing numpy arrays/scalars and TorchVersion in the
    metadata.

    A checkpoint that names other Python classes or functions (an MMPose / mmengine training checkpoint
    with ``message_hub`` history buffers, ...) is read again with a restricted unpickler that replaces
    each of those by an inert :class:`Placeholder` (no foreign code runs); its tensors (``state_dict``)
    are usable, the replaced objects are not. Raises FileNotFoundError for a missing file, and
    :class:`CheckpointError` for a damaged/non-torch file, a file that is not a dict (a whole pickled
    model: the message says how to save a state dict instead) and weights holding NaN/inf
    (:func:`check_finite`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint file not found: {str(path)!r}')
    problem = sniff_non_checkpoint(path)
    if problem is not None:
        raise CheckpointError(f'{str(path)!r} is not a torch checkpoint: it is {problem}')
    return _checked(path, _load(path, map_location))


def _load(path: Path, map_location: Any) -> Any:
    """The unpickled file: weights-only, else with the restricted unpickler (see :func:`read_checkpoint`)."""
    try:
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r'GLOBAL (\S+)', str(err)) or re.search(r'but got (<[^>]*>)', str(err))
        if found is None:  # not an allow-list refusal: a damaged or non-torch file
            detail = re.search(r'WeightsUnpickler error:\s*(.*?)\s*(?:Check the documentation|$)', str(err),
                               re.S)
            raise CheckpointError(f'{str(path)!r} is not a readable torch checkpoint: '
                                  f'{detail.group(1) if detail else err}') from err
    except (RuntimeError, EOFError) as err:
        raise CheckpointError(f'{str(path)!r} is not a readable torch checkpoint: {err}') from err
    try:
        return torch.load(path, map_location=map_location, weights_only=False,
                          pickle_module=RestrictedPickleModule)
    except (pickle.UnpicklingError, RuntimeError, EOFError, TypeError, AttributeError) as err:
        raise CheckpointError(f'{str(path)!r} is not a readable torch checkpoint: {err}') from err


def _checked(path: Path, checkpoint: Any) -> Any:
    """``checkpoint`` if it is a dict whose weights are all finite; else a :class:`CheckpointError` that says
    what the file holds (a whole pickled model, another object) or which tensors are NaN/inf."""
    if not isinstance(checkpoint, Mapping):
        module = pickled_module(checkpoint)
        what = (f'a whole pickled model ({module}, saved with torch.save(model)), which is not unpickled '
                'because that would run code' if module else f'a {type(checkpoint).__name__}, not a dict')
        raise CheckpointError(f'{str(path)!r} holds {what}; {SAVE_WEIGHTS_HINT}')
    for key in ('state_dict', 'train_state_dict', 'model'):
        if isinstance(checkpoint.get(key), Mapping):
            check_finite(checkpoint[key], repr(str(path)))
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        check_finite(checkpoint, repr(str(path)))
    return checkpoint


def pickled_module(obj: Any) -> str | None:
    """The class name (``module.Class``) of a whole ``nn.Module`` pickled into a checkpoint (read back as a
    :class:`Placeholder` holding the module's ``__dict__``), else None."""
    if isinstance(obj, torch.nn.Module):
        return f'{type(obj).__module__}.{type(obj).__qualname__}'
    state = getattr(obj, 'state', None) if isinstance(obj, Placeholder) else None
    return obj.target if isinstance(state, Mapping) and '_modules' in state else None


def check_finite(state_dict: Mapping[str, Any], source: str) -> None:
    """Raise :class:`CheckpointError` naming ``source``, the count and the first tensors of ``state_dict``
    that hold NaN or inf (damaged weights, e.g. float16 BatchNorm statistics that overflowed). Quantisation
    observers' ``min_val`` / ``max_val`` (inf until they observe data) are not weights and not checked."""
    bad = [k for k, v in state_dict.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not k.endswith(('min_val', 'max_val'))
           and not bool(torch.isfinite(v).all())]
    if bad:
        first = ', '.join(bad[:3]) + (f' (+{len(bad) - 3} more)' if len(bad) > 3 else '')
        counted = f'{len(bad)} tensors hold' if len(bad) > 1 else '1 tensor holds'
        raise CheckpointError(f'{source}: {counted} NaN or inf values ({first}): damaged weights, e.g. '
                              'saved in float16 where BatchNorm statistics overflowed; use float32 weights')


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any], mark: bool = True) -> None:
    """Write ``payload`` with ``torch.save`` atomically (``utils.output_files.atomic_output``: a temporary
    file in the same folder, then ``os.replace``; permissions from the umask), creating the folder if needed.

    With ``mark`` (this project's format) ``payload`` must hold a ``'state_dict'``; a copy of its
    ``'meta'`` gets ``{CHECKPOINT_MARKER: CHECKPOINT_VERSION}`` added. ``payload`` is not modified.
    """
    path = Path(path)
    if mark:
        if 'state_dict' not in payload:
            raise KeyError(f'save_checkpoint({str(path)!r}): payload needs a "state_dict" entry, '
                           f'got keys {list(payload)}')
        payload = {**payload, 'meta': {**payload.get('meta', {}), CHECKPOINT_MARKER: CHECKPOINT_VERSION}}
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def strip_prefix(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The entries whose key starts with ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def state_dict_of(checkpoint: Any, source: str = 'checkpoint') -> StateDict:
    """The tensors of a checkpoint: its ``'state_dict'``, its ``'model'``, or the bare mapping itself.

    A ``module.`` prefix on every key (DistributedDataParallel) is removed. ``source`` names the file in
    error messages.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f'{source}: expected a dict, got {type(checkpoint).__name__}')
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
        if pickled_module(checkpoint.get(key)):
            raise CheckpointError(f'{source}: its {key!r} entry is a whole pickled model '
                                  f'({pickled_module(checkpoint[key])}), not weights; {SAVE_WEIGHTS_HINT}')
    if not checkpoint or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointError(f'{source}: no state dict found; expected a "state_dict" or "model" entry '
                              f'or a mapping of tensors, got keys {list(checkpoint)[:10]}')
    state_dict = OrderedDict(checkpoint)
    if all(k.startswith('module.') for k in state_dict):
        state_dict = OrderedDict(strip_prefix(state_dict, 'module.'))
    return state_dict
