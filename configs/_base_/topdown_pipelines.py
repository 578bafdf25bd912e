"""Top-down data pipelines shared by the pose configs (a Python helper, not a config file).

Pose configs import these builders so that configs differing only in the codec / input size do not
copy their pipelines: ``train_pipeline, train_pipeline_stage2, val_pipeline = aic_coco_pipelines(codec)``.
Each returns lists of transform config dicts (MMPose 1.3.2 names and arguments).
"""
from __future__ import annotations

from typing import Any

Pipeline = list[dict[str, Any]]


def val_pipeline(codec: dict[str, Any], use_udp: bool = False) -> Pipeline:
    """Load, crop the (ground-truth or detected) box to the codec's input size, pack."""
    return [
        dict(type='LoadImage'),
        dict(type='GetBBoxCenterScale'),
        dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=use_udp),
        dict(type='PackPoseInputs'),
    ]


def _aic_coco_train(codec: dict[str, Any], use_udp: bool, bbox_transform: dict[str, Any],
                    dropout_p: float) -> Pipeline:
    return [
        dict(type='LoadImage'),
        dict(type='GetBBoxCenterScale'),
        dict(type='RandomFlip', direction='horizontal'),
        dict(type='RandomHalfBody'),
        dict(type='RandomBBoxTransform', **bbox_transform),
        dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=use_udp),
        dict(type='YOLOXHSVRandomAug'),
        dict(type='Albumentation', transforms=[
            dict(type='Blur', p=0.1),
            dict(type='MedianBlur', p=0.1),
            dict(type='CoarseDropout', max_holes=1, max_height=0.4, max_width=0.4, min_holes=1,
                 min_height=0.2, min_width=0.2, p=dropout_p),
        ]),
        dict(type='GenerateTarget', encoder=codec),
        dict(type='PackPoseInputs'),
    ]


def aic_coco_pipelines(codec: dict[str, Any], use_udp: bool = False) -> tuple[Pipeline, Pipeline, Pipeline]:
    """The original MMPose_Clean recipe (strong augmentation, lighter in the last ``stage2_num_epochs``).

    Returns ``(train_pipeline, train_pipeline_stage2, val_pipeline)``.
    """
    stage1 = _aic_coco_train(codec, use_udp, dict(scale_factor=[0.6, 1.4], rotate_factor=80), 1.0)
    stage2 = _aic_coco_train(codec, use_udp,
                             dict(shift_factor=0., scale_factor=[0.75, 1.25], rotate_factor=60), 0.5)
    return stage1, stage2, val_pipeline(codec, use_udp)


def coco_pipelines(codec: dict[str, Any], use_udp: bool = False) -> tuple[Pipeline, Pipeline]:
    """MMPose's official top-down COCO recipe (flip, half body, default box jitter).

    Returns ``(train_pipeline, val_pipeline)``.
    """
    train = [
        dict(type='LoadImage'),
        dict(type='GetBBoxCenterScale'),
        dict(type='RandomFlip', direction='horizontal'),
        dict(type='RandomHalfBody'),
        dict(type='RandomBBoxTransform'),
        dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=use_udp),
        dict(type='GenerateTarget', encoder=codec),
        dict(type='PackPoseInputs'),
    ]
    return train, val_pipeline(codec, use_udp)
