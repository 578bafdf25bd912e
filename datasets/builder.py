"""build_dataset: build a dataset config, resolving metainfo files against the config's folder."""
from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

from datasets.metainfo import resolve_metainfo_file
from utils.registry import DATASETS


def _resolve_from_files(node: Any, search_dirs: tuple[str, ...]) -> Any:
    if isinstance(node, Mapping):
        out = {k: _resolve_from_files(v, search_dirs) for k, v in node.items()}
        meta = out.get('metainfo')
        if isinstance(meta, Mapping) and 'from_file' in meta:
            found = resolve_metainfo_file(meta['from_file'], search_dirs)
            out['metainfo'] = {**meta, 'from_file': str(found)}
        return out
    if isinstance(node, (list, tuple)):
        return type(node)(_resolve_from_files(v, search_dirs) for v in node)
    return node


def build_dataset(cfg: Mapping[str, Any], cfg_dir: str | os.PathLike | None = None,
                  cfg_path: str = 'dataset') -> Any:
    """Build a dataset from its config dict (``cfg`` is not modified); ``cfg_path`` is where it sits in
    the whole config (e.g. ``'train_dataloader.dataset'``), for error messages.

    Every ``metainfo=dict(from_file=PATH)`` inside (wrapped datasets included) is looked up
    relative to ``cfg_dir`` (the folder of the config file) first, then the repository root.
    """
    dirs = (str(cfg_dir),) if cfg_dir is not None else ()
    return DATASETS.build(_resolve_from_files(copy.deepcopy(dict(cfg)), dirs), cfg_path=cfg_path)
