# MMPose's official SimCC recipe without deconvolutions: MobileNetV2-1.0x, 256x192 crops, COCO, 210 epochs
# (2,289,553 parameters), ImageNet-pretrained backbone (place the file in pretrained_weight/).
_base_ = ['../_base_/default_runtime.py', '../_base_/schedules/coco_210e_adam.py',
          '../_base_/data/coco_topdown.py', '../_base_/models/mobilenetv2_simcc.py']

codec = dict(codec, input_size=(192, 256))

model = dict(
    # ImageNet statistics, as MMPose's recipes
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
    backbone=dict(widen_factor=1., init_cfg=dict(
        type='Pretrained', checkpoint='pretrained_weight/mobilenet_v2_1.0x_imagenet_backbone.pth')),
    head=dict(
        input_size=codec['input_size'],
        in_featuremap_size=tuple(s // 32 for s in codec['input_size']),
        decoder=codec),
)

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
