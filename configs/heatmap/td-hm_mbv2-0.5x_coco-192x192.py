# Heatmap (SimpleBaseline) MobileNetV2-0.5x, 192x192 crops, COCO, MMPose's official heatmap schedule:
# trains the backbone that RLE/SimCC training can start from (mobilenetv2_0.5x_heatmap_coco_backbone_192x192).
from configs._base_.topdown_pipelines import coco_pipelines

_base_ = ['../_base_/default_runtime.py', '../_base_/schedules/coco_210e_adam.py',
          '../_base_/data/coco_topdown.py']

codec = dict(type='MSRAHeatmap', input_size=(192, 192), heatmap_size=(48, 48), sigma=2)

model = dict(
    type='TopdownPoseEstimator',
    # (x - 128) / 128: the original project's normalisation (simple for fixed-point chips)
    data_preprocessor=dict(type='PoseDataPreprocessor', mean=[128, 128, 128], std=[128, 128, 128],
                           bgr_to_rgb=True),
    backbone=dict(
        type='MobileNetV2',
        widen_factor=0.5,
        out_indices=(7, ),
        init_cfg=dict(type='Pretrained',
                      checkpoint='mbv2-0.5x-imagenet-backbone')),
    head=dict(
        type='HeatmapHead',
        in_channels=1280,
        out_channels=17,
        loss=dict(type='KeypointMSELoss', use_target_weight=True),
        decoder=codec),
    test_cfg=dict(flip_test=True, flip_mode='heatmap', shift_heatmap=True),
)

train_pipeline, val_pipeline = coco_pipelines(codec)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
