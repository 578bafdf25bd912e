# Heatmap (SimpleBaseline) MobileNetV2-0.5x, 192x192 crops, COCO, MMPose's official heatmap schedule:
# trains the backbone that RLE/SimCC training can start from (mobilenetv2_0.5x_heatmap_coco_backbone_192x192).
_base_ = ['../_base_/default_runtime.py', '../_base_/schedules/coco_210e_adam.py',
          '../_base_/data/coco_topdown.py', '../_base_/models/mobilenetv2_heatmap.py']

model = dict(backbone=dict(widen_factor=0.5, init_cfg=dict(type='Pretrained',
                                                          checkpoint='mbv2-0.5x-imagenet-backbone')))

train_dataloader, val_dataloader = coco_pipelines(codec)
test_dataloader = val_dataloader
