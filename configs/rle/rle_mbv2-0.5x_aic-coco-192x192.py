# RLE head on MobileNetV2-0.5x, 192x192 crops, COCO+AIC, 420 epochs: the original MMPose_Clean recipe
# (774,788 parameters without the RLE flow; 48.81 COCO val AP for the published weights).
# The backbone starts from a COCO+AIC UDP-heatmap model
# (configs/heatmap/td-hm-udp_mbv2-0.5x_aic-coco-192x192.py).
from configs._base_.topdown_pipelines import aic_coco_pipelines

_base_ = ['../_base_/default_runtime.py', '../_base_/schedules/aic-coco_420e_adamw.py',
          '../_base_/data/aic-coco_topdown.py']

codec = dict(type='RegressionLabel', input_size=(192, 192))

model = dict(
    type='TopdownPoseEstimator',
    # (x - 128) / 128: the original project's normalisation (simple for fixed-point chips)
    data_preprocessor=dict(type='PoseDataPreprocessor', mean=[128, 128, 128], std=[128, 128, 128],
                           bgr_to_rgb=True),
    backbone=dict(
        type='MobileNetV2',
        widen_factor=0.5,
        out_indices=(7, ),
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint='mbv2-0.5x-udp-coco-aic-backbone-192x192')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='RLEHead',
        in_channels=1280,
        num_joints=17,
        loss=dict(type='RLELoss', use_target_weight=True),
        decoder=codec),
    test_cfg=dict(flip_test=True, shift_coords=True),
)

train_pipeline, train_pipeline_stage2, val_pipeline = aic_coco_pipelines(codec)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline, pipeline_stage2=train_pipeline_stage2))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
