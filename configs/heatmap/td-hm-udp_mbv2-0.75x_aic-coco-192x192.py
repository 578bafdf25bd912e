# The UDP-heatmap pretraining on MobileNetV2-0.75x: the backbone the 0.75x RLE and SimCC recipes start from
# (mobilenetv2_0.75x_udp_coco_aic_backbone_192x192).
_base_ = ['./td-hm-udp_mbv2-0.5x_aic-coco-192x192.py']

model = dict(backbone=dict(
    widen_factor=0.75,
    init_cfg=dict(checkpoint='pretrained_weight/mobilenet_v2_0.75x_imagenet_backbone.pth')))
