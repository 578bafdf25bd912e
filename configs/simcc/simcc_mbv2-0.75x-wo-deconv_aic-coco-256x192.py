# The 192x192 SimCC-0.75x recipe on 256x192 (w x h = 192 x 256) crops (1,421,105 parameters).
_base_ = ['./simcc_mbv2-0.75x-wo-deconv_aic-coco-192x192.py']

codec = dict(codec, input_size=(192, 256))

model = dict(head=dict(
    input_size=codec['input_size'],
    in_featuremap_size=tuple(s // 32 for s in codec['input_size']),
    decoder=codec))

# pipelines (MMPose 1.3.2 transforms): the original project's strong augmentation (the 192x192 recipe's,
# at the new input size)
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='RandomBBoxTransform', scale_factor=[0.6, 1.4], rotate_factor=80),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=False),
    dict(type='YOLOXHSVRandomAug'),
    dict(
        type='Albumentation',
        transforms=[
            dict(type='Blur', p=0.1),
            dict(type='MedianBlur', p=0.1),
            dict(type='CoarseDropout', max_holes=1, max_height=0.4, max_width=0.4, min_holes=1,
                 min_height=0.2, min_width=0.2, p=1.0),
        ]),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs'),
]
# the last stage2_num_epochs epochs: no shift, milder scale and rotation, half as much dropout
train_pipeline_stage2 = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='RandomBBoxTransform', shift_factor=0., scale_factor=[0.75, 1.25], rotate_factor=60),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=False),
    dict(type='YOLOXHSVRandomAug'),
    dict(
        type='Albumentation',
        transforms=[
            dict(type='Blur', p=0.1),
            dict(type='MedianBlur', p=0.1),
            dict(type='CoarseDropout', max_holes=1, max_height=0.4, max_width=0.4, min_holes=1,
                 min_height=0.2, min_width=0.2, p=0.5),
        ]),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs'),
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=False),
    dict(type='PackPoseInputs'),
]

# data loaders: the datasets come from ../_base_/data/aic-coco_topdown.py
train_dataloader = dict(dataset=dict(pipeline=train_pipeline, pipeline_stage2=train_pipeline_stage2))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
