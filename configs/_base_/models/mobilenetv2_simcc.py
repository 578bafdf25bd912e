# SimCC head without deconvolutions on MobileNetV2; 192x192 crops unless a recipe sets another codec
# (then also the head's input_size, in_featuremap_size and decoder, derived from it as below).
_base_ = './mobilenetv2_topdown.py'

codec = dict(type='SimCCLabel', input_size=(192, 192), sigma=6.0, simcc_split_ratio=2.0)

model = dict(
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
