"""Datasets, samplers and collate; transforms live in datasets.transforms."""
from datasets.base import BasePoseDataset
from datasets.body import AicDataset, CocoDataset
from datasets.builder import build_dataset
from datasets.coco_style import CocoStyleDataset
from datasets.collate import pose_collate
from datasets.loader import PoseDataLoader, build_dataloader
from datasets.metainfo import parse_pose_metainfo, resolve_metainfo_file
from datasets.sampler import DefaultSampler
from datasets.wrappers import CombinedDataset, RepeatDataset

__all__ = [
    'AicDataset', 'BasePoseDataset', 'CocoDataset', 'CocoStyleDataset', 'CombinedDataset', 'DefaultSampler',
    'PoseDataLoader', 'RepeatDataset', 'build_dataloader', 'build_dataset', 'parse_pose_metainfo',
    'pose_collate', 'resolve_metainfo_file',
]
