# RLE head on MobileNetV2-0.5x, 192x192 crops, COCO+AIC, 420 epochs: the original MMPose_Clean recipe
# (774,788 parameters without the RLE flow; 48.81 COCO val AP for the published weights).
# The backbone starts from a COCO+AIC UDP-heatmap model
# (configs/heatmap/td-hm-udp_mbv2-0.5x_aic-coco-192x192.py).
_base_ = ['../_base_/default_runtime.py', '../_base_/schedules/aic-coco_420e_adamw.py',
          '../_base_/data/aic-coco_topdown.py', '../_base_/models/mobilenetv2_rle.py']

model = dict(backbone=dict(widen_factor=0.5, init_cfg=dict(
    type='Pretrained', prefix='backbone.',
    checkpoint='mbv2-0.5x-udp-coco-aic-backbone-192x192')))

# codec: RegressionLabel, 192x192, from ../_base_/models/mobilenetv2_rle.py
# pipelines (MMPose 1.3.2 transforms): the original project's strong augmentation
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='RandomBBoxTransform', scale_factor=[0.6, 1.4], rotate_factor=80),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=False),
    dict(type='YOLOXHSVRandomAug'),
    dict(
        type='Albumentation',
        transforms=[
            dict(type='Blur', p=0.1),
            dict(type='MedianBlur', p=0.1),
            dict(type='CoarseDropout', max_holes=1, max_height=0.4, max_width=0.4, min_holes=1,
                 min_height=0.2, min_width=0.2, p=1.0),
        ]),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs'),
]
# the last stage2_num_epochs epochs: no shift, milder scale and rotation, half as much dropout
train_pipeline_stage2 = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='RandomBBoxTransform', shift_factor=0., scale_factor=[0.75, 1.25], rotate_factor=60),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=False),
    dict(type='YOLOXHSVRandomAug'),
    dict(
        type='Albumentation',
        transforms=[
            dict(type='Blur', p=0.1),
            dict(type='MedianBlur', p=0.1),
            dict(type='CoarseDropout', max_holes=1, max_height=0.4, max_width=0.4, min_holes=1,
                 min_height=0.2, min_width=0.2, p=0.5),
        ]),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs'),
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=False),
    dict(type='PackPoseInputs'),
]

# data loaders: the datasets come from ../_base_/data/aic-coco_topdown.py
train_dataloader = dict(dataset=dict(pipeline=train_pipeline, pipeline_stage2=train_pipeline_stage2))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
