"""Consistency checks of a COCO-format annotation file, shared by the datasets (``CocoStyleDataset``) and
the metric (``evaluation.coco_eval.load_coco_annotations``), so that both refuse the same files by name.

* Image and annotation ids must be unique: files merged by hand often repeat them, and both the dataset
  (which image an annotation belongs to) and pycocotools (which ground truth a prediction matched) then
  silently mix up instances.
* A labelled keypoint (visibility v > 0) needs numeric x and y: ``null`` or a string would reach
  pycocotools as a Python object and fail there with a TypeError, or become NaN in training targets.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np

from utils.errors import DataError

_SHOWN = 3  # duplicates named in the message


def check_unique_ids(path: str, field: str, ids: Iterable[Any]) -> None:
    """Raise :class:`DataError` naming ``path`` and the first repeated ids of ``field``.

    Args:
        path: the annotation file, for the message.
        field: ``'images'`` or ``'annotations'``.
        ids: the ``id`` of each entry of ``data[field]`` in file order (``None`` entries are skipped).
    """
    first: dict[Any, int] = {}
    repeats: list[tuple[Any, int, int]] = []  # (id, index of its first entry, index of the repeat)
    for index, entry_id in enumerate(ids):
        if entry_id is None:
            continue
        if entry_id in first:
            repeats.append((entry_id, first[entry_id], index))
        else:
            first[entry_id] = index
    if not repeats:
        return
    shown = ', '.join(f'{entry_id!r} ({field}[{a}] and [{b}])' for entry_id, a, b in repeats[:_SHOWN])
    more = f' and {len(repeats) - _SHOWN} more' if len(repeats) > _SHOWN else ''
    what = 'image' if field == 'images' else 'annotation'
    raise DataError(f'{path}: {len(repeats)} repeated {what} id{"s" * (len(repeats) > 1)} in "{field}": '
                    f'{shown}{more}; ids must be unique (files merged by hand? '
                    + ('give the images of one file new ids and its annotations the new image_id)'
                       if field == 'images' else 'renumber the annotations of one file)'))


def _exact_values(value: list, where: str) -> np.ndarray:
    """``value`` as float64 with ``null`` as NaN; anything else that is not a number is an error."""
    out = np.empty(len(value), dtype=np.float64)
    for i, v in enumerate(value):
        if v is None:
            out[i] = np.nan
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[i] = v
        else:
            k = i // 3
            raise DataError(f'{where}: keypoint {k} is (x, y, v) = '
                            f'{json.dumps(value[3 * k:3 * k + 3])[:80]}: {"xyv"[i % 3]} must be a number')
    return out


def keypoint_array(value: Any, num_keypoints: int, where: str) -> np.ndarray:
    """An annotation's ``keypoints`` list as a (K, 3) float64 array (x, y, visibility).

    Every visibility must be a number; a labelled keypoint (v > 0) must have finite numeric x and y.
    The x and y of unlabelled keypoints are not used: ``null`` there reads as 0.

    Args:
        value: the ``keypoints`` field (K * 3 numbers).
        num_keypoints: K.
        where: how errors start, naming the file and the entry (e.g. ``'ann.json: annotations[3] (id 7)
            field "keypoints"'``).

    Raises:
        DataError: ``value`` is not K * 3 numbers, or an entry is as described above.
    """
    if not isinstance(value, (list, tuple)) or len(value) != 3 * num_keypoints:
        got = f'{len(value)} values' if isinstance(value, (list, tuple)) else repr(value)[:40]
        raise DataError(f'{where}: expected {3 * num_keypoints} numbers (x, y, v for each of '
                        f'{num_keypoints} keypoints), got {got}')
    arr = np.asarray(value)
    if arr.dtype.kind in 'iu':  # the common case: integers only, nothing more to check
        return arr.astype(np.float64).reshape(num_keypoints, 3)
    if arr.dtype.kind not in 'bf' or arr.ndim != 1:
        arr = _exact_values(list(value), where)
    kpts = arr.astype(np.float64).reshape(num_keypoints, 3)
    labelled = kpts[:, 2] > 0
    bad = ~np.isfinite(kpts[:, 2]) | (labelled & ~np.isfinite(kpts[:, :2]).all(axis=1))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        problem = ('its visibility must be a number' if not np.isfinite(kpts[k, 2])
                   else 'it is labelled (v > 0), so x and y must be numbers')
        raise DataError(f'{where}: keypoint {k} is (x, y, v) = '
                        f'{json.dumps(list(value[3 * k:3 * k + 3]))}: {problem}'
                        + (f' ({int(bad.sum())} such keypoints)' if bad.sum() > 1 else ''))
    kpts[~labelled, :2] = np.nan_to_num(kpts[~labelled, :2], nan=0.0)
    return kpts
