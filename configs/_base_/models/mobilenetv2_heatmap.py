# Heatmap (SimpleBaseline) head on MobileNetV2, MSRA heatmaps of 192x192 crops unless a recipe sets
# another codec (then also model.head.decoder). Shaped like the other head fragments by design:
# each names its head type, channels, loss and decoder.
_base_ = './mobilenetv2_topdown.py'

codec = dict(type='MSRAHeatmap', input_size=(192, 192), heatmap_size=(48, 48), sigma=2)

model = dict(
    head=dict(
        type='HeatmapHead',
        in_channels=1280,
        out_channels=17,
        loss=dict(type='KeypointMSELoss', use_target_weight=True),
        decoder=codec),
    test_cfg=dict(flip_test=True, flip_mode='heatmap', shift_heatmap=True),
)
