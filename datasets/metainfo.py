"""Dataset meta information (keypoint names, flip pairs, skeleton, colours, sigmas) from config files."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from utils.config import Config

REPO_ROOT = Path(__file__).resolve().parents[1]
_REQUIRED = ('dataset_name', 'keypoint_info', 'skeleton_info', 'joint_weights', 'sigmas')


def resolve_metainfo_file(path: str | os.PathLike, search_dirs: tuple[str | os.PathLike, ...] = ()
                          ) -> Path:
    """Find a metainfo config file: absolute, else relative to each of ``search_dirs`` (e.g. the
    folder of the config that names it), else relative to the repository root. Never the cwd.

    Raises:
        FileNotFoundError: naming every place that was tried.
    """
    path = Path(path)
    candidates = [path] if path.is_absolute() else [Path(d) / path for d in search_dirs] + [REPO_ROOT / path]
    for cand in candidates:
        if cand.is_file():
            return cand.resolve()
    tried = ', '.join(str(c) for c in candidates)
    raise FileNotFoundError(f'metainfo file {str(path)!r} not found (tried: {tried})')


def parse_pose_metainfo(metainfo: Mapping[str, Any], search_dirs: tuple[str | os.PathLike, ...] = ()
                        ) -> dict[str, Any]:
    """Turn a ``dataset_info`` dict (or ``dict(from_file=PATH)``) into the parsed metainfo.

    Returns a dict with: dataset_name, num_keypoints, keypoint_id2name, keypoint_name2id,
    upper_body_ids, lower_body_ids, flip_indices (K,), flip_pairs, keypoint_colors (K, 3) uint8,
    num_skeleton_links, skeleton_links (pairs of ids), skeleton_link_colors (L, 3) uint8,
    dataset_keypoint_weights / joint_weights (K,) float32, sigmas (K,) float32.
    """
    source = 'metainfo'
    if 'from_file' in metainfo:
        file = resolve_metainfo_file(metainfo['from_file'], search_dirs)
        cfg = Config.fromfile(file)
        if 'dataset_info' not in cfg:
            raise KeyError(f'metainfo file {file} defines no "dataset_info" dict')
        metainfo, source = cfg['dataset_info'], str(file)
    missing = [k for k in _REQUIRED if k not in metainfo]
    if missing:
        raise KeyError(f'{source} lacks the key(s) {missing}; a dataset_info needs {list(_REQUIRED)}')

    id2name, name2id, colors, upper, lower, swaps = {}, {}, [], [], [], []
    for kpt_id, kpt in metainfo['keypoint_info'].items():
        name = kpt['name']
        id2name[kpt_id] = name
        name2id[name] = kpt_id
        colors.append(kpt.get('color', [255, 128, 0]))
        if kpt.get('type', '') == 'upper':
            upper.append(kpt_id)
        elif kpt.get('type', '') == 'lower':
            lower.append(kpt_id)
        swaps.append((name, kpt.get('swap', '') or name))
    try:
        flip_indices = [name2id[swap] for _, swap in swaps]
        links = [tuple(name2id[n] for n in sk['link']) for sk in metainfo['skeleton_info'].values()]
    except KeyError as e:
        raise KeyError(f'{source}: keypoint name {e} used in a swap or skeleton link is not in '
                       'keypoint_info') from None
    flip_pairs = []
    for name, swap in swaps:
        pair = (name2id[swap], name2id[name])
        if swap != name and pair not in flip_pairs:
            flip_pairs.append(pair)
    weights = np.array(metainfo['joint_weights'], dtype=np.float32)
    parsed = dict(
        dataset_name=metainfo['dataset_name'],
        num_keypoints=len(id2name),
        keypoint_id2name=id2name,
        keypoint_name2id=name2id,
        upper_body_ids=upper,
        lower_body_ids=lower,
        flip_indices=flip_indices,
        flip_pairs=flip_pairs,
        keypoint_colors=np.array(colors, dtype=np.uint8),
        num_skeleton_links=len(links),
        skeleton_links=links,
        skeleton_link_colors=np.array(
            [sk.get('color', [96, 96, 255]) for sk in metainfo['skeleton_info'].values()], dtype=np.uint8),
        dataset_keypoint_weights=weights,
        joint_weights=weights,
        sigmas=np.array(metainfo['sigmas'], dtype=np.float32),
    )
    if len(parsed['sigmas']) != parsed['num_keypoints'] or len(weights) != parsed['num_keypoints']:
        raise ValueError(f'{source}: sigmas ({len(parsed["sigmas"])}) and joint_weights ({len(weights)}) '
                         f'must have one value per keypoint ({parsed["num_keypoints"]})')
    return parsed
