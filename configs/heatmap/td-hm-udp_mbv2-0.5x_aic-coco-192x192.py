# UDP heatmap MobileNetV2-0.5x, 192x192 crops, COCO+AIC with the original project's augmentation and
# 420-epoch schedule: trains the backbone the RLE-0.5x recipe starts from
# (mobilenetv2_0.5x_udp_coco_aic_backbone_192x192).
from configs._base_.topdown_pipelines import aic_coco_pipelines

_base_ = ['../_base_/default_runtime.py', '../_base_/schedules/aic-coco_420e_adamw.py',
          '../_base_/data/aic-coco_topdown.py']

codec = dict(type='UDPHeatmap', input_size=(192, 192), heatmap_size=(48, 48), sigma=2)

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
    test_cfg=dict(flip_test=True, flip_mode='heatmap', shift_heatmap=False),
)

train_pipeline, train_pipeline_stage2, val_pipeline = aic_coco_pipelines(codec, use_udp=True)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline, pipeline_stage2=train_pipeline_stage2))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
