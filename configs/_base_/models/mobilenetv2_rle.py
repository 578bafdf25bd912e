# RLE regression head on globally pooled MobileNetV2 features; 192x192 crops unless a recipe sets
# another codec (then also model.head.decoder).
_base_ = './mobilenetv2_topdown.py'

codec = dict(type='RegressionLabel', input_size=(192, 192))

model = dict(
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='RLEHead',
        in_channels=1280,
        num_joints=17,
        loss=dict(type='RLELoss', use_target_weight=True),
        decoder=codec),
    test_cfg=dict(flip_test=True, shift_coords=True),
)
