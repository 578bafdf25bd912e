# MMPose's official RLE recipe: MobileNetV2-1.0x, 256x192 crops, COCO, 210 epochs (2,310,980 parameters),
# backbone from MMPose's COCO heatmap MobileNetV2 (place the file in pretrained_weight/).
_base_ = ['../_base_/default_runtime.py', '../_base_/schedules/coco_210e_adam.py',
          '../_base_/data/coco_topdown.py', '../_base_/models/mobilenetv2_rle.py']

optim_wrapper = dict(optimizer=dict(lr=1e-3))

codec = dict(type='RegressionLabel', input_size=(192, 256))

model = dict(
    # ImageNet statistics, as MMPose's recipes
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
    backbone=dict(widen_factor=1., init_cfg=dict(
        type='Pretrained', prefix='backbone.',
        checkpoint='pretrained_weight/mobilenetv2_coco_256x192-d1e58e7b_20200727.pth')),
    head=dict(decoder=codec),
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
val_evaluator = dict(score_mode='bbox_rle')
test_evaluator = val_evaluator
