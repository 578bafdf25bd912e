# RLE head on MobileNetV2-0.5x, 192x192 crops, COCO+AIC, 420 epochs: the original MMPose_Clean recipe
# (774,788 parameters without the RLE flow; 48.81 COCO val AP for the published weights).
# The backbone starts from a COCO+AIC UDP-heatmap model
# (configs/heatmap/td-hm-udp_mbv2-0.5x_aic-coco-192x192.py).
_base_ = ['../_base_/default_runtime.py', '../_base_/schedules/aic-coco_420e_adamw.py',
          '../_base_/data/aic-coco_topdown.py', '../_base_/models/mobilenetv2_rle.py']

model = dict(backbone=dict(widen_factor=0.5, init_cfg=dict(
    type='Pretrained', prefix='backbone.',
    checkpoint='mbv2-0.5x-udp-coco-aic-backbone-192x192')))

train_dataloader, val_dataloader = aic_coco_pipelines(codec)
test_dataloader = val_dataloader
