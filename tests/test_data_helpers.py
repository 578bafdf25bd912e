"""Shared helpers for the dataset/transform/loader tests: paths to ../shared/data and tiny COCO files."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / 'shared'
DATA = SHARED / 'data'
RLE_CFG = SHARED / 'weights' / 'rle_mbv2-0.5x_aic-coco-192x192_202403131203.config.py'
AIC_TO_COCO = [(0, 6), (1, 8), (2, 10), (3, 5), (4, 7), (5, 9), (6, 12), (7, 14), (8, 16), (9, 11), (10, 13),
               (11, 15)]


def need_data() -> Path:
    """The shared data folder, or skip the test."""
    if not (DATA / 'coco' / 'test_coco.json').is_file():
        pytest.skip('../shared/data is not available')
    return DATA


def coco_cfg(**kw) -> dict:
    return dict(type='CocoDataset', data_root=str(need_data()) + '/', ann_file='coco/test_coco.json',
                data_prefix=dict(img='coco/'), **kw)


def aic_cfg(**kw) -> dict:
    return dict(type='AicDataset', data_root=str(need_data()) + '/', ann_file='aic/test_aic.json',
                data_prefix=dict(img='aic/'), **kw)


def rle_pipelines() -> dict:
    """train_pipeline, train_pipeline_stage2, val_pipeline and codec of the original RLE config."""
    from utils.config import Config

    if not RLE_CFG.is_file():
        pytest.skip('the original RLE config is not available')
    text = RLE_CFG.read_text().replace("_base_ = ['../../../_base_/default_runtime.py']", '')
    cfg = Config.fromstring(text, directory=Path(__file__).resolve().parent)
    return {k: cfg[k] for k in ('train_pipeline', 'train_pipeline_stage2', 'val_pipeline', 'codec')}


def combined_cfg(pipeline=(), pipeline_stage2=None) -> dict:
    return dict(type='CombinedDataset', metainfo=dict(from_file='configs/_base_/datasets/coco.py'),
                datasets=[dict(type='RepeatDataset', times=3, dataset=coco_cfg(pipeline=[])),
                          aic_cfg(pipeline=[dict(type='KeypointConverter', num_keypoints=17,
                                                 mapping=AIC_TO_COCO)])],
                pipeline=list(pipeline), pipeline_stage2=pipeline_stage2)


def write_tiny_coco(folder: Path, n_people: int = 2, image_size: tuple[int, int] = (120, 160)) -> Path:
    """A COCO keypoint file with one random image holding ``n_people`` people; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = image_size
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / 'img1.jpg'), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    anns = []
    for i in range(n_people):
        kpts = np.zeros((17, 3))
        kpts[:, 0] = rng.uniform(20, w - 20, 17)
        kpts[:, 1] = rng.uniform(20, h - 20, 17)
        kpts[:, 2] = 2
        anns.append(dict(id=i + 1, image_id=1, category_id=1, bbox=[10.0, 10.0, w - 30.0, h - 30.0],
                         keypoints=kpts.ravel().tolist(), num_keypoints=17, area=1000.0, iscrowd=0))
    data = dict(images=[dict(id=1, file_name='img1.jpg', height=h, width=w)], annotations=anns,
                categories=[dict(id=1, name='person')])
    path = folder / 'ann.json'
    path.write_text(json.dumps(data))
    return path
