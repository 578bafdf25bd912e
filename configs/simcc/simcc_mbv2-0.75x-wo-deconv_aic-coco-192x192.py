# SimCC head without deconvolutions on MobileNetV2-0.75x, 192x192 crops, COCO+AIC, 420 epochs
# (1,405,617 parameters); the original project's COCO+AIC recipe, backbone from the 0.75x UDP pretraining.
# Shaped like the RLE recipe by design: a recipe names its bases, the backbone width and starting weights.
_base_ = ['../_base_/default_runtime.py', '../_base_/schedules/aic-coco_420e_adamw.py',
          '../_base_/data/aic-coco_topdown.py', '../_base_/models/mobilenetv2_simcc.py']

model = dict(backbone=dict(widen_factor=0.75, init_cfg=dict(
    type='Pretrained', prefix='backbone.',
    checkpoint='pretrained_weight/mobilenetv2_0.75x_udp_coco_aic_backbone_192x192.pth')))

train_dataloader, val_dataloader = aic_coco_pipelines(codec)
test_dataloader = val_dataloader
