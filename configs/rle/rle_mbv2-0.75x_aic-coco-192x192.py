# RLE head on MobileNetV2-0.75x, 192x192 crops, COCO+AIC, 420 epochs (1,442,532 parameters): the 0.5x
# recipe with a wider backbone, initialised from the 0.75x UDP-heatmap pretraining.
_base_ = ['./rle_mbv2-0.5x_aic-coco-192x192.py']

model = dict(backbone=dict(
    widen_factor=0.75,
    init_cfg=dict(checkpoint='pretrained_weight/mobilenetv2_0.75x_udp_coco_aic_backbone_192x192.pth')))
