"""Body keypoint datasets in COCO format: COCO (17 keypoints) and AI Challenger (14)."""
from __future__ import annotations

from datasets.coco_style import CocoStyleDataset
from utils.registry import DATASETS


@DATASETS.register_module()
class CocoDataset(CocoStyleDataset):
    """COCO-2017 person keypoints (17 keypoints); see :class:`CocoStyleDataset` for the arguments."""

    METAINFO: dict = dict(from_file='configs/_base_/datasets/coco.py')


@DATASETS.register_module()
class AicDataset(CocoStyleDataset):
    """AI Challenger person keypoints (14 keypoints, COCO-format json as published by MMPose)."""

    METAINFO: dict = dict(from_file='configs/_base_/datasets/aic.py')
