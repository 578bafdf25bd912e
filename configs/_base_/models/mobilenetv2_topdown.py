# A top-down pose estimator on MobileNetV2's last feature map (1280 channels, stride 32). Inputs are
# normalised as (x - 128) / 128: the original project's choice (simple for fixed-point chips).
# The head fragments beside this file add a head and its codec; recipes set the backbone's width and
# starting weights (init_cfg).
model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(type='PoseDataPreprocessor', mean=[128, 128, 128], std=[128, 128, 128],
                           bgr_to_rgb=True),
    backbone=dict(type='MobileNetV2', out_indices=(7, )),
)
