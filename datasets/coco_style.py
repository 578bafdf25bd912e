"""CocoStyleDataset: top-down person instances from a COCO-format keypoint annotation file."""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from datasets.annotation_checks import check_unique_ids, keypoint_array
from datasets.base import BasePoseDataset, PipelineCfg
from datasets.image_io import ImageLoadError, decode_image, read_file_bytes
from datasets.image_size import INFO_KEY, SIZE_MISMATCH_MODES, AnnotatedSize, check_image_size
from datasets.jpeg_header import HEADER_BYTES, jpeg_frame
from datasets.metainfo import parse_pose_metainfo
from structures.bbox import bbox_xywh2xyxy
from utils.errors import DataError, SettingsError
from utils.registry import DATASETS

logger = logging.getLogger('mmpose_clean.datasets')  # a child of utils.logger's logger: in train.log
_drops_logged: set[str] = set()  # drop summaries this process logged (train and val may read one file)

SAMPLE_META_KEYS = ('dataset_name', 'upper_body_ids', 'lower_body_ids', 'flip_pairs',
                    'dataset_keypoint_weights', 'flip_indices', 'skeleton_links')


def load_json_file(path: str, what: str) -> Any:
    """Parse a JSON file; errors name ``what`` (e.g. 'annotation file') and the path."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{what} not found: {path}')
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f'{what} {path} is not valid JSON: {e}') from None
    except UnicodeDecodeError:
        raise DataError(f'{what} {path} is not a text (JSON) file') from None


def _join(root: str | None, path: str | None) -> str | None:
    if path is None or not root or os.path.isabs(path):
        return path
    return os.path.join(root, path)


class _Field:
    """Reads fields of one JSON record, raising errors that name the file, record and field."""

    def __init__(self, file: str, kind: str, index: int, record: Any) -> None:
        if not isinstance(record, Mapping):
            raise DataError(f'{file}: {kind}[{index}] must be a JSON object, got {type(record).__name__}')
        self.file, self.kind, self.index, self.record = file, kind, index, record

    def error(self, field: str, expected: str) -> DataError:
        rid = self.record.get('id', '?')
        return DataError(f'{self.file}: {self.kind}[{self.index}] (id {rid}) field "{field}": '
                          f'expected {expected}, got {self.record.get(field, "<missing>")!r:.80}')

    def number(self, field: str, default: Any = None) -> float:
        value = self.record.get(field, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(field, 'a number')
        return value

    def numbers(self, field: str, length: int) -> np.ndarray:
        value = self.record.get(field)
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise self.error(field, f'{length} numbers') from None
        if arr.shape != (length,):
            raise self.error(field, f'{length} numbers')
        return arr

    def keypoints(self, num_keypoints: int) -> np.ndarray:
        """The ``keypoints`` field as (K, 3) x, y, v (see ``annotation_checks.keypoint_array``)."""
        where = f'{self.file}: {self.kind}[{self.index}] (id {self.record.get("id", "?")}) field "keypoints"'
        return keypoint_array(self.record.get('keypoints'), num_keypoints, where)


def _image_file_size(path: str) -> tuple[int, int] | None:
    """(h, w) of an image file as ``LoadImage`` decodes it: from a plain JPEG's header, else decoded;
    ``None`` when it cannot be read (the per-sample path reports that)."""
    try:
        with open(path, 'rb') as f:
            frame = jpeg_frame(f.read(HEADER_BYTES))
        return frame[:2] if frame is not None else decode_image(read_file_bytes(path), path).shape[:2]
    except (OSError, ImageLoadError):
        return None


@DATASETS.register_module()
@DATASETS.register_module(name='BaseCocoStyleDataset')  # MMPose's name, for custom-keypoint configs
class CocoStyleDataset(BasePoseDataset):
    """Person instances of a COCO-format keypoint file, one sample per instance (top-down).

    Args:
        ann_file: COCO-format json (``images``, ``annotations`` with ``keypoints`` as K*3 numbers).
        bbox_file: test mode only: detections (list of {image_id, category_id, bbox xywh, score},
            like COCO_val2017_detections_AP_H_56_person.json) used instead of the GT boxes.
        data_mode: only 'topdown'.
        metainfo: a ``dataset_info`` dict or ``dict(from_file=PATH)`` (PATH relative to the config's
            folder when built through ``datasets.build_dataset``, else to the repository root);
            defaults to the class's ``METAINFO``.
        data_root: prefix of ``ann_file`` and ``data_prefix['img']`` when they are relative.
        data_prefix: ``dict(img=FOLDER)`` holding the images.
        filter_cfg: ``dict(bbox_score_thr=T)`` drops boxes scoring below T.
        indices: keep only the first N samples (int) or those listed.
        sample_interval: keep only images whose id is a multiple of it.
        size_mismatch: what to do with an image whose decoded size differs from the ``width`` /
            ``height`` of the annotation file (resized after annotation): ``'error'`` (default) names
            it; ``'rescale'`` resizes it to the annotated size when read (``datasets/image_size.py``)
            and logs how many images differ once, reading every image's header when the dataset is built.
        pipeline, pipeline_stage2, test_mode, max_refetch, skip_bad_images: see ``BasePoseDataset``.

    With GT boxes, crowd instances, instances without labelled keypoints and empty boxes are
    dropped (MMPose's top-down filter, in training and test mode alike). Repeated image or annotation
    ids and labelled keypoints without numeric coordinates are errors naming the file and entry.
    Annotations are stored as numpy arrays (not per-instance dicts) to keep loader workers small;
    ``segmentation`` and the raw annotation are not kept.
    """

    METAINFO: dict = {}

    def __init__(self, ann_file: str = '', bbox_file: str | None = None, data_mode: str = 'topdown',
                 metainfo: Mapping[str, Any] | None = None, data_root: str | None = None,
                 data_prefix: Mapping[str, str] | None = None, filter_cfg: Mapping[str, Any] | None = None,
                 indices: int | Sequence[int] | None = None, serialize_data: bool = True,
                 pipeline: PipelineCfg = (), pipeline_stage2: PipelineCfg = None, test_mode: bool = False,
                 lazy_init: bool = False, max_refetch: int = 1000, sample_interval: int = 1,
                 skip_bad_images: bool = False, size_mismatch: str = 'error') -> None:
        if size_mismatch not in SIZE_MISMATCH_MODES:
            raise SettingsError(f'{type(self).__name__}: size_mismatch must be one of '
                                f'{SIZE_MISMATCH_MODES}, got {size_mismatch!r}')
        if data_mode != 'topdown':
            raise SettingsError(f'{type(self).__name__}: only data_mode="topdown" is supported, '
                                f'got {data_mode!r}')
        if bbox_file and not test_mode:
            raise SettingsError(f'{type(self).__name__}: bbox_file is only used with test_mode=True')
        super().__init__(pipeline, pipeline_stage2, test_mode, max_refetch, skip_bad_images)
        self.data_mode = data_mode
        self.data_root = data_root
        self.ann_file = _join(data_root, ann_file)
        self.bbox_file = bbox_file
        self.img_prefix = _join(data_root, dict(data_prefix or {}).get('img', '')) or ''
        self.filter_cfg = dict(filter_cfg or {})
        self.sample_interval = sample_interval
        self.size_mismatch = size_mismatch
        self._metainfo = parse_pose_metainfo(metainfo if metainfo is not None else self.METAINFO)
        self._num_keypoints = self._metainfo['num_keypoints']
        self._load(indices)

    # ----------------------------------------------------------------- loading
    def _load(self, indices: int | Sequence[int] | None) -> None:
        data = load_json_file(self.ann_file, 'annotation file')
        if not isinstance(data, Mapping):
            raise DataError(f'{self.ann_file}: expected a JSON object with "images" and "annotations"')
        images = data.get('images')
        if not isinstance(images, list):
            raise DataError(f'{self.ann_file}: field "images" must be a list, got '
                             f'{type(images).__name__ if images is not None else "<missing>"}')
        self._read_images(images)
        if self.bbox_file:
            inst = self._read_detections()
        else:
            anns = data.get('annotations')
            if not isinstance(anns, list):
                raise DataError(f'{self.ann_file}: field "annotations" must be a list')
            if not anns:
                raise DataError(f'{self.ann_file}: "annotations" is empty: no person instances to use')
            inst = self._read_annotations(anns)
        keep = np.ones(len(inst['id']), dtype=bool)
        if 'bbox_score_thr' in self.filter_cfg:
            keep &= inst['bbox_score'] >= self.filter_cfg['bbox_score_thr']
        order = np.flatnonzero(keep)
        if indices is not None:
            order = order[:indices] if isinstance(indices, int) else order[np.asarray(indices, np.int64)]
        self._inst = {k: np.ascontiguousarray(v[order]) for k, v in inst.items()}
        del self._img_row  # a per-image dict would be copied into every loader worker on write
        if self.size_mismatch == 'rescale':
            self._log_resized_images()

    def _log_resized_images(self) -> None:
        """Count (and log once) the images of the samples whose size differs from the annotated one."""
        rows, first = np.unique(self._inst['img_row'], return_index=True)
        resized = 0
        for row, idx in zip(rows, first):
            if self._img_hw[row, 0] > 0:
                info = self.get_data_info(int(idx))
                hw = _image_file_size(info['img_path'])
                resized += hw is not None and check_image_size(info, hw, info['img_path']) is not None
        if resized:
            logger.warning("%s: %d of %d images differ in size from its width/height; they are resized to "
                           "the annotated size when read (size_mismatch='rescale')", self.ann_file, resized,
                           len(rows))

    def _read_images(self, images: list) -> None:
        check_unique_ids(self.ann_file, 'images', (img.get('id') if isinstance(img, Mapping) else None
                                                   for img in images))
        ids, names, hw = [], [], []
        for i, img in enumerate(images):
            rec = _Field(self.ann_file, 'images', i, img)
            ids.append(int(rec.number('id')))
            name = img.get('file_name')
            if not isinstance(name, str):
                raise rec.error('file_name', 'a string')
            names.append(name)
            known = 'height' in img or 'width' in img  # (0, 0): no size given, nothing to check
            hw.append((int(rec.number('height')), int(rec.number('width'))) if known else (0, 0))
        self._img_ids = np.asarray(ids, dtype=np.int64)
        self._img_names = np.asarray(names, dtype=np.str_)
        self._img_hw = np.asarray(hw, dtype=np.int32).reshape(-1, 2)
        self._img_row = {img_id: row for row, img_id in enumerate(ids)}

    def _image_row(self, rec: _Field) -> int:
        img_id = rec.record.get('image_id')
        if img_id not in self._img_row:
            raise rec.error('image_id', f'the id of an entry of "images" in {self.ann_file}')
        return self._img_row[img_id]

    def _read_annotations(self, anns: list) -> dict[str, np.ndarray]:
        k = self._num_keypoints
        check_unique_ids(self.ann_file, 'annotations', (a.get('id') if isinstance(a, Mapping) else None
                                                        for a in anns))
        per_image: dict[int, list[int]] = {}
        recs = []
        for i, ann in enumerate(anns):
            rec = _Field(self.ann_file, 'annotations', i, ann)
            if 'bbox' not in ann or 'keypoints' not in ann:
                continue  # not a keypoint instance (as MMPose)
            per_image.setdefault(self._image_row(rec), []).append(len(recs))
            recs.append(rec)
        rows, cols = [], {n: [] for n in ('id', 'category_id', 'bbox', 'keypoints', 'num_keypoints', 'area',
                                          'iscrowd')}
        for row in range(len(self._img_ids)):
            if self._img_ids[row] % self.sample_interval:
                continue
            h, w = self._img_hw[row]
            for r in per_image.get(row, ()):
                rec = recs[r]
                x, y, bw, bh = rec.numbers('bbox', 4)
                kpts = rec.keypoints(k)
                x1, x2 = np.clip([x, x + bw], 0, w - 1) if w > 0 else (x, x + bw)
                y1, y2 = np.clip([y, y + bh], 0, h - 1) if h > 0 else (y, y + bh)
                rows.append(row)
                cols['id'].append(int(rec.number('id')))
                cols['category_id'].append(int(rec.number('category_id', 1)))
                cols['bbox'].append((x1, y1, x2, y2))
                cols['keypoints'].append(kpts)
                nk = rec.record.get('num_keypoints')
                cols['num_keypoints'].append(int(nk) if nk is not None else
                                             int(np.count_nonzero(kpts[:, :2].max(axis=1))))
                area = rec.record.get('area')
                cols['area'].append(float(area) if area is not None
                                    else max((x2 - x1) * (y2 - y1) * 0.53, 1.0))
                cols['iscrowd'].append(int(rec.record.get('iscrowd', 0)))
        n = len(rows)
        kpts = np.asarray(cols['keypoints'], dtype=np.float32).reshape(n, k, 3)
        bbox = np.asarray(cols['bbox'], dtype=np.float32).reshape(n, 4)
        inst = {
            'img_row': np.asarray(rows, dtype=np.int32),
            'id': np.asarray(cols['id'], dtype=np.int64),
            'category_id': np.asarray(cols['category_id'], dtype=np.int32),
            'bbox': bbox,
            'bbox_score': np.ones(n, dtype=np.float32),
            'keypoints': np.ascontiguousarray(kpts[..., :2]),
            'keypoints_visible': np.minimum(1, kpts[..., 2]),
            'num_keypoints': np.asarray(cols['num_keypoints'], dtype=np.int32),
            'area': np.asarray(cols['area'], dtype=np.float32),
            'iscrowd': np.asarray(cols['iscrowd'], dtype=np.uint8),
        }
        crowd = inst['iscrowd'] != 0
        empty_box = ~crowd & ((bbox[:, 2] <= bbox[:, 0]) | (bbox[:, 3] <= bbox[:, 1]))
        unlabelled = ~crowd & ~empty_box & ((inst['num_keypoints'] <= 0)
                                            | (inst['keypoints'].reshape(n, -1).max(axis=1, initial=0) <= 0))
        valid = ~(crowd | empty_box | unlabelled)
        dropped = {'crowd': int(crowd.sum()), 'with an empty or negative box': int(empty_box.sum()),
                   'without labelled keypoints': int(unlabelled.sum())}
        if n and not valid.any():
            raise DataError(f'{self.ann_file}: none of its {n} person annotations is usable ('
                            + ', '.join(f'{v} {k}' for k, v in dropped.items()) + ')')
        summary = f'{self.ann_file}: {n - int(valid.sum())} of {n} annotations dropped (' + \
            ', '.join(f'{v} {k}' for k, v in dropped.items() if v) + ')'
        if not valid.all() and summary not in _drops_logged:
            _drops_logged.add(summary)
            logger.info(summary)
        return {key: value[valid] for key, value in inst.items()}

    def _read_detections(self) -> dict[str, np.ndarray]:
        dets = load_json_file(self.bbox_file, 'bbox file')
        if not isinstance(dets, list):
            raise DataError(f'{self.bbox_file}: expected a list of detections, got {type(dets).__name__}')
        rows, boxes, scores = [], [], []
        for i, det in enumerate(dets):
            rec = _Field(self.bbox_file, 'detections', i, det)
            if rec.record.get('category_id') != 1:
                continue
            rows.append(self._image_row(rec))
            box = det.get('bbox')
            if not isinstance(box, list) or len(box) < 4:
                raise rec.error('bbox', 'a list [x, y, w, h]')
            boxes.append(rec.numbers('bbox', len(box))[:4])
            scores.append(float(rec.number('score')))
        n, k = len(rows), self._num_keypoints
        bbox = bbox_xywh2xyxy(np.asarray(boxes, dtype=np.float32).reshape(n, 4))
        return {
            'img_row': np.asarray(rows, dtype=np.int32),
            'id': np.arange(n, dtype=np.int64),
            'category_id': np.ones(n, dtype=np.int32),
            'bbox': bbox,
            'bbox_score': np.asarray(scores, dtype=np.float32),
            'keypoints': np.zeros((n, k, 2), dtype=np.float32),
            'keypoints_visible': np.ones((n, k), dtype=np.float32),
            'num_keypoints': np.zeros(n, dtype=np.int32),
            'area': (bbox[:, 2] - bbox[:, 0]) * (bbox[:, 3] - bbox[:, 1]),
            'iscrowd': np.zeros(n, dtype=np.uint8),
        }

    # ---------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self._inst['id'])

    def image_ids(self, with_samples: bool = False) -> np.ndarray:
        """Ids of the images the dataset covers: those of its annotation file that ``sample_interval``
        keeps, or (``with_samples``) only the images its samples come from."""
        if with_samples:
            return self._img_ids[np.unique(self._inst['img_row'])]
        return self._img_ids[self._img_ids % self.sample_interval == 0]

    def get_data_info(self, idx: int) -> dict[str, Any]:
        """Instance ``idx`` as a data-contract dict (arrays with a leading instance dim of 1)."""
        if not -len(self) <= idx < len(self):
            raise IndexError(f'{type(self).__name__} index {idx} out of range (length {len(self)})')
        inst = self._inst
        row = int(inst['img_row'][idx])
        info = {
            'img_id': int(self._img_ids[row]),
            'img_path': os.path.join(self.img_prefix, str(self._img_names[row])),
            'bbox': inst['bbox'][idx:idx + 1].copy(),
            'bbox_score': inst['bbox_score'][idx:idx + 1].copy(),
            'num_keypoints': int(inst['num_keypoints'][idx]),
            'keypoints': inst['keypoints'][idx:idx + 1].copy(),
            'keypoints_visible': inst['keypoints_visible'][idx:idx + 1].copy(),
            'area': inst['area'][idx].copy(),
            'iscrowd': int(inst['iscrowd'][idx]),
            'id': int(inst['id'][idx]),
            'category_id': int(inst['category_id'][idx]),
        }
        h, w = self._img_hw[row].tolist()  # Python ints
        if h > 0:
            info[INFO_KEY] = AnnotatedSize(h, w, self.ann_file, self.size_mismatch)
        if self.bbox_file:
            info['img_shape'] = (h, w)
        for key in SAMPLE_META_KEYS:  # shared, read-only: transforms never modify them in place
            info[key] = self._metainfo[key]
        return info
