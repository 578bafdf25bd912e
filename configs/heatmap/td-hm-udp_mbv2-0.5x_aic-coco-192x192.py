# UDP heatmap MobileNetV2-0.5x, 192x192 crops, COCO+AIC with the original project's augmentation and
# 420-epoch schedule: trains the backbone the RLE-0.5x recipe starts from
# (mobilenetv2_0.5x_udp_coco_aic_backbone_192x192).
_base_ = ['../_base_/default_runtime.py', '../_base_/schedules/aic-coco_420e_adamw.py',
          '../_base_/data/aic-coco_topdown.py', '../_base_/models/mobilenetv2_heatmap.py']

codec = dict(type='UDPHeatmap', input_size=(192, 192), heatmap_size=(48, 48), sigma=2)

model = dict(
    backbone=dict(widen_factor=0.5,
                  init_cfg=dict(type='Pretrained', checkpoint='mbv2-0.5x-imagenet-backbone')),
    head=dict(decoder=codec),
    test_cfg=dict(shift_heatmap=False),
)

# pipelines (MMPose 1.3.2 transforms): the original project's strong augmentation, with UDP crops
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='RandomBBoxTransform', scale_factor=[0.6, 1.4], rotate_factor=80),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=True),
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
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=True),
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
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=True),
    dict(type='PackPoseInputs'),
]

# data loaders: the datasets come from ../_base_/data/aic-coco_topdown.py
train_dataloader = dict(dataset=dict(pipeline=train_pipeline, pipeline_stage2=train_pipeline_stage2))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
