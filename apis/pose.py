"""Top-down pose inference: build a pose model from config + checkpoint, estimate keypoints in boxes.

Crops are prepared by the config's validation pipeline (``val_dataloader.dataset.pipeline``, else
``val_pipeline``) and collated with ``datasets.collate.pose_collate``, exactly as ``val.py`` does, so
keypoints for the same image and box equal those of the validation path.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from apis.inputs import ImageLike, as_config, read_image
from datasets.coco_style import SAMPLE_META_KEYS  # what datasets add to samples
from datasets.collate import pose_collate
from datasets.metainfo import parse_pose_metainfo
from datasets.transforms.base import Compose
from deploy.ort_backend import load_onnx_pose_model
from models.checkpoints.model_zoo import resolve_checkpoint
from models.loading import load_model
from utils.config import Config, require_sections
from utils.registry import DATASETS

POSE_PIPELINE = ('val_dataloader.dataset.pipeline', 'val_pipeline')  # the crops' transforms, either


def _val_dataset_cfg(cfg: Config) -> Mapping:
    return cfg.get('val_dataloader', {}).get('dataset', {})


def val_pipeline_of(cfg: Config) -> list:
    """The validation pipeline of a pose config (``val_dataloader.dataset.pipeline``, else
    ``val_pipeline``)."""
    require_sections(cfg, [POSE_PIPELINE], 'the pose model (apis.init_model, the demo)')
    return list(_val_dataset_cfg(cfg).get('pipeline') or cfg.get('val_pipeline') or [])


def dataset_meta_of(cfg: Config) -> dict[str, Any]:
    """Parsed metainfo (keypoint names, flip indices, skeleton, colours) of the validation dataset:
    its ``metainfo`` entry, else its class's default (e.g. COCO for ``CocoDataset``)."""
    dataset = _val_dataset_cfg(cfg)
    metainfo = dataset.get('metainfo')
    if metainfo is None:
        metainfo = DATASETS.get(dataset['type']).METAINFO if 'type' in dataset else \
            dict(from_file='configs/_base_/datasets/coco.py')
    search = (str(Path(cfg.filename).parent),) if cfg.filename else ()
    return parse_pose_metainfo(metainfo, search)


def init_model(config: str | os.PathLike | Mapping, checkpoint: str | os.PathLike | None = None,
               device: str | torch.device = 'cpu') -> nn.Module:
    """Build a top-down pose estimator from its config, load weights, and put it in eval mode.

    Args:
        config: config path or loaded config.
        checkpoint: this project's, the original project's or an official MMPose checkpoint, as a
            path, a training run's work dir, a model-zoo name or an http(s) URL; an ``.onnx`` file exported by
            ``tools/export_onnx.py`` (served by ONNX Runtime); None keeps random weights (with a warning).
            With ``quantization=dict(mode='qat')`` in the config, a checkpoint of that QAT run.
        device: where the model runs (ONNX Runtime models run on the CPU).

    The model gets ``cfg``, ``dataset_meta`` (see :func:`dataset_meta_of`) and ``pipeline`` (the
    validation pipeline). A checkpoint that does not fit the config raises
    ``models.checkpoints.CheckpointError`` naming the missing / unexpected keys.
    """
    cfg = as_config(config, 'pose config')
    require_sections(cfg, ['model', POSE_PIPELINE], 'the pose model (apis.init_model, the demo)')
    path = None if checkpoint is None else resolve_checkpoint(checkpoint)
    if path is not None and path.suffix == '.onnx':
        model = load_onnx_pose_model(path, cfg)
    else:  # float or QAT estimator, strict load
        model = load_model(cfg, path, origin='pose checkpoint')
    if checkpoint is None:
        warnings.warn('init_model: no checkpoint given, the pose model has random weights', stacklevel=2)
    model.cfg = cfg
    model.dataset_meta = dataset_meta_of(cfg)
    model.pipeline = Compose(val_pipeline_of(cfg))
    return model.to(device).eval()


def _xyxy(bboxes: Any, bbox_format: str) -> np.ndarray:
    boxes = np.asarray(bboxes, dtype=np.float32).reshape(-1, 4)
    if bbox_format == 'xywh':
        boxes = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    elif bbox_format != 'xyxy':
        raise ValueError(f"bbox_format must be 'xyxy' or 'xywh', got {bbox_format!r}")
    return boxes


@torch.no_grad()
def inference_topdown(model: nn.Module, img: ImageLike, bboxes: Any = None, bbox_format: str = 'xyxy',
                      bbox_scores: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """Estimate the keypoints of each person box of one image, all boxes in one forward pass.

    Args:
        model: from :func:`init_model`.
        img: image path or (H, W, 3) BGR uint8 array.
        bboxes: (N, 4) boxes in image px, ``bbox_format`` 'xyxy' or 'xywh'; None or empty: the whole
            image is one box.
        bbox_scores: (N,) detection scores stored with the results (default 1).

    Returns:
        per box ``{'keypoints': (K, 2) float32 image px, 'keypoint_scores': (K,) float32,
        'bbox': (4,) float32 xyxy, 'bbox_score': float}``.
    """
    if bboxes is None or len(bboxes) == 0:
        h, w = read_image(img).shape[:2]
        boxes = np.array([[0, 0, w, h]], dtype=np.float32)
        scores = np.ones(1, dtype=np.float32)
    else:
        boxes = _xyxy(bboxes, bbox_format)
        scores = np.ones(len(boxes), np.float32) if bbox_scores is None else \
            np.asarray(bbox_scores, dtype=np.float32).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(f'{len(boxes)} boxes but {len(scores)} bbox_scores')
    source = {'img_path': os.fspath(img)} if not isinstance(img, np.ndarray) else {'img': img}
    meta = model.dataset_meta
    k = meta['num_keypoints']
    samples = []
    for i, (box, score) in enumerate(zip(boxes, scores)):
        sample = dict(source, img_id=0, id=i, category_id=1, bbox=box[None], bbox_score=score[None],
                      keypoints=np.zeros((1, k, 2), np.float32),
                      keypoints_visible=np.zeros((1, k), np.float32),
                      num_keypoints=0, area=np.float32(0), iscrowd=0)
        sample.update({key: meta[key] for key in SAMPLE_META_KEYS})
        samples.append(model.pipeline(sample))
    batch = pose_collate(samples)
    pred = model.predict(batch['inputs'], batch['meta'])
    return [{'keypoints': pred['keypoints'][i], 'keypoint_scores': pred['keypoint_scores'][i],
             'bbox': boxes[i], 'bbox_score': float(scores[i])} for i in range(len(boxes))]
