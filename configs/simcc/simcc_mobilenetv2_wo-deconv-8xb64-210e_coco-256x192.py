# MMPose's official SimCC recipe without deconvolutions: MobileNetV2-1.0x, 256x192 crops, COCO, 210 epochs
# (2,289,553 parameters), ImageNet-pretrained backbone (place the file in pretrained_weight/).
from configs._base_.topdown_pipelines import coco_pipelines

_base_ = ['../_base_/default_runtime.py', '../_base_/schedules/coco_210e_adam.py',
          '../_base_/data/coco_topdown.py']

codec = dict(type='SimCCLabel', input_size=(192, 256), sigma=6.0, simcc_split_ratio=2.0)

model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(type='PoseDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(
        type='MobileNetV2',
        widen_factor=1.,
        out_indices=(7, ),
        init_cfg=dict(type='Pretrained',
                      checkpoint='pretrained_weight/mobilenet_v2_1.0x_imagenet_backbone.pth')),
    head=dict(
        type='SimCCHead',
        in_channels=1280,
        out_channels=17,
        input_size=codec['input_size'],
        in_featuremap_size=tuple(s // 32 for s in codec['input_size']),
        simcc_split_ratio=codec['simcc_split_ratio'],
        deconv_out_channels=None,
        loss=dict(type='KLDiscretLoss', use_target_weight=True),
        decoder=codec),
    test_cfg=dict(flip_test=True),
)

train_pipeline, val_pipeline = coco_pipelines(codec)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
