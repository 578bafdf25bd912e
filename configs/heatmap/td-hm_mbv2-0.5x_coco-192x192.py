# Heatmap (SimpleBaseline) MobileNetV2-0.5x, 192x192 crops, COCO, MMPose's official heatmap schedule:
# trains the backbone that RLE/SimCC training can start from (mobilenetv2_0.5x_heatmap_coco_backbone_192x192).
_base_ = ['../_base_/default_runtime.py', '../_base_/schedules/coco_210e_adam.py',
          '../_base_/data/coco_topdown.py', '../_base_/models/mobilenetv2_heatmap.py']

model = dict(backbone=dict(widen_factor=0.5, init_cfg=dict(type='Pretrained',
                                                          checkpoint='mbv2-0.5x-imagenet-backbone')))

# codec: MSRAHeatmap, 192x192, from ../_base_/models/mobilenetv2_heatmap.py
# pipelines (MMPose 1.3.2 transforms): MMPose's official top-down COCO augmentation
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='RandomBBoxTransform'),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=False),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs'),
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=False),
    dict(type='PackPoseInputs'),
]

# data loaders: the datasets come from ../_base_/data/coco_topdown.py
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
