"""Detector inference: build an RTMDet from its config and checkpoint, detect objects in an image."""
from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torchvision.ops import nms

from apis.inputs import ImageLike, as_config, read_image
from deploy.ort_backend import load_onnx_detector
from models.checkpoints.model_zoo import resolve_checkpoint
from models.detection.det_transforms import DetTestTransform
from models.loading import load_model
from utils.config import Config, require_sections

DEFAULT_TEST_PIPELINE = [dict(type='Resize', scale=(640, 640), keep_ratio=True),
                         dict(type='Pad', size=(640, 640), pad_val=dict(img=(114, 114, 114)))]


def _test_pipeline(cfg: Config) -> list:
    """The detector's test-time pipeline: ``test_dataloader.dataset.pipeline``, else ``test_pipeline``."""
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    pipeline = dataset.get('pipeline', cfg.get('test_pipeline'))
    return list(pipeline) if pipeline is not None else DEFAULT_TEST_PIPELINE


def init_detector(config: str | os.PathLike | Mapping, checkpoint: str | os.PathLike | None = None,
                  device: str | torch.device = 'cpu') -> nn.Module:
    """Build a detector from a config file (ours, or a flat MMDetection RTMDet config) in eval mode.

    Args:
        config: config path, or a loaded config / dict with a ``model`` entry.
        checkpoint: MMDetection checkpoint (``{'meta', 'state_dict'}``) as a path, a work dir, a model-zoo
            name or an http(s) URL (downloaded into pretrained_weight/); an ``.onnx`` file exported by
            ``tools/export_onnx.py`` (served by ONNX Runtime); None leaves random weights.
        device: where the model runs.

    The model gets ``cfg`` (the config) and ``test_transform`` (resize + pad of the test pipeline).
    Raises ``models.checkpoints.CheckpointError`` naming missing/unexpected keys when the checkpoint
    does not fit the config.
    """
    cfg = as_config(config, 'detector config')
    require_sections(cfg, ['model'], 'the detector (apis.init_detector, the demo)')
    path = None if checkpoint is None else resolve_checkpoint(checkpoint)
    if path is not None and path.suffix == '.onnx':
        model = load_onnx_detector(path, cfg)
    else:
        model = load_model(cfg, path, origin='detector checkpoint')
        if checkpoint is None:
            warnings.warn('init_detector: no checkpoint given, the detector has random weights',
                          stacklevel=2)
    model.cfg = cfg
    model.test_transform = DetTestTransform.from_pipeline(_test_pipeline(cfg))
    return model.to(device).eval()


@torch.no_grad()
def inference_detector(model: nn.Module, img: ImageLike) -> dict[str, np.ndarray]:
    """Detect objects in one image.

    Args:
        model: from :func:`init_detector`.
        img: image path or (H, W, 3) BGR uint8 array.

    Returns:
        ``{'bboxes': (N, 4) float32 xyxy original-image px, 'scores': (N,) float32,
        'labels': (N,) int64}``, sorted by score.
    """
    image = read_image(img)
    padded, meta = model.test_transform(image)
    inputs = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)))[None]
    result = model.predict(inputs, [meta])[0]
    return {'bboxes': result['bboxes'].float().cpu().numpy(),
            'scores': result['scores'].float().cpu().numpy(),
            'labels': result['labels'].cpu().numpy().astype(np.int64)}


def select_boxes(detections: Mapping[str, np.ndarray], cat_id: int = 0, score_thr: float = 0.3,
                 nms_thr: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of one class scoring above ``score_thr``, de-duplicated by NMS at IoU ``nms_thr``
    (what MMPose's top-down demo does with the detector's output).

    Args:
        detections: output of :func:`inference_detector`.
        cat_id: class index to keep (0 = person for COCO detectors).

    Returns:
        boxes (M, 4) float32 xyxy px and scores (M,) float32, by decreasing score.
    """
    keep = (detections['labels'] == cat_id) & (detections['scores'] > score_thr)
    boxes = torch.from_numpy(detections['bboxes'][keep])
    scores = torch.from_numpy(detections['scores'][keep])
    order = nms(boxes, scores, nms_thr).numpy()
    return boxes.numpy()[order], scores.numpy()[order]
