# MMPose's official RLE recipe: MobileNetV2-1.0x, 256x192 crops, COCO, 210 epochs (2,310,980 parameters),
# backbone from MMPose's COCO heatmap MobileNetV2 (place the file in pretrained_weight/).
from configs._base_.topdown_pipelines import coco_pipelines

_base_ = ['../_base_/default_runtime.py', '../_base_/schedules/coco_210e_adam.py',
          '../_base_/data/coco_topdown.py']

optim_wrapper = dict(optimizer=dict(lr=1e-3))

codec = dict(type='RegressionLabel', input_size=(192, 256))

model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(type='PoseDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(
        type='MobileNetV2',
        widen_factor=1.,
        out_indices=(7, ),
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint='pretrained_weight/mobilenetv2_coco_256x192-d1e58e7b_20200727.pth')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='RLEHead',
        in_channels=1280,
        num_joints=17,
        loss=dict(type='RLELoss', use_target_weight=True),
        decoder=codec),
    test_cfg=dict(flip_test=True, shift_coords=True),
)

train_pipeline, val_pipeline = coco_pipelines(codec)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(score_mode='bbox_rle')
test_evaluator = val_evaluator
