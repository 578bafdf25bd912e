# COCO train2017 training (MMPose's official top-down data settings, with this project's data/ layout)
# and the shared val2017 evaluation. Recipes add the pipelines: train_dataloader = dict(dataset=dict(
# pipeline=train_pipeline)) and val_dataloader = dict(dataset=dict(pipeline=val_pipeline)).
_base_ = './coco_val.py'

train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='CocoDataset',
        data_root=data_root,
        data_mode=data_mode,
        ann_file='coco/annotations/person_keypoints_train2017.json',
        data_prefix=dict(img='coco/images/train2017/'),
    ))
