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

train_dataloader, val_dataloader = aic_coco_pipelines(codec, use_udp=True)
test_dataloader = val_dataloader
