# SimCC head without deconvolutions on MobileNetV2-0.75x, 192x192 crops, COCO+AIC, 420 epochs
# (1,405,617 parameters); the original project's COCO+AIC recipe, backbone from the 0.75x UDP pretraining.
from configs._base_.topdown_pipelines import aic_coco_pipelines

_base_ = ['../_base_/default_runtime.py', '../_base_/schedules/aic-coco_420e_adamw.py',
          '../_base_/data/aic-coco_topdown.py']

codec = dict(type='SimCCLabel', input_size=(192, 192), sigma=6.0, simcc_split_ratio=2.0)

model = dict(
    type='TopdownPoseEstimator',
    # (x - 128) / 128: the original project's normalisation (simple for fixed-point chips)
    data_preprocessor=dict(type='PoseDataPreprocessor', mean=[128, 128, 128], std=[128, 128, 128],
                           bgr_to_rgb=True),
    backbone=dict(
        type='MobileNetV2',
        widen_factor=0.75,
        out_indices=(7, ),
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint='pretrained_weight/mobilenetv2_0.75x_udp_coco_aic_backbone_192x192.pth')),
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

train_pipeline, train_pipeline_stage2, val_pipeline = aic_coco_pipelines(codec)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline, pipeline_stage2=train_pipeline_stage2))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
