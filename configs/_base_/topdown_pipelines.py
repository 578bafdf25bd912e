# Top-down data pipelines for a codec (MMPose 1.3.2 transform names and arguments). A config fragment
# of functions only: the data bases inherit it, so a recipe calls them after it has chosen its codec:
#   train_dataloader, val_dataloader = aic_coco_pipelines(codec)
#   test_dataloader = val_dataloader
# Each returns the (train_dataloader, val_dataloader) entries that set the datasets' pipelines.


def val_pipeline(codec: dict, use_udp: bool = False) -> list[dict]:
    """Load, crop the (ground-truth or detected) box to the codec's input size, pack."""
    return [
        dict(type='LoadImage'),
        dict(type='GetBBoxCenterScale'),
        dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=use_udp),
        dict(type='PackPoseInputs'),
    ]


def _aic_coco_train(codec: dict, use_udp: bool, bbox_transform: dict, dropout_p: float) -> list[dict]:
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


def aic_coco_pipelines(codec: dict, use_udp: bool = False) -> tuple[dict, dict]:
    """The original MMPose_Clean recipe: strong augmentation, lighter in the last ``stage2_num_epochs``."""
    stage1 = _aic_coco_train(codec, use_udp, dict(scale_factor=[0.6, 1.4], rotate_factor=80), 1.0)
    stage2 = _aic_coco_train(codec, use_udp,
                             dict(shift_factor=0., scale_factor=[0.75, 1.25], rotate_factor=60), 0.5)
    return (dict(dataset=dict(pipeline=stage1, pipeline_stage2=stage2)),
            dict(dataset=dict(pipeline=val_pipeline(codec, use_udp))))


def coco_pipelines(codec: dict, use_udp: bool = False) -> tuple[dict, dict]:
    """MMPose's official top-down COCO recipe (flip, half body, default box jitter)."""
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
    return dict(dataset=dict(pipeline=train)), dict(dataset=dict(pipeline=val_pipeline(codec, use_udp)))
