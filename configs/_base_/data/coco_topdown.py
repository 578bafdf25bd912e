# COCO train2017 training and val2017 evaluation with the AP_H_56 person detections (MMPose's official
# top-down data settings, with this project's data/ layout). Configs add the pipelines:
#   train_dataloader = dict(dataset=dict(pipeline=...))
#   val_dataloader = test_dataloader = dict(dataset=dict(pipeline=...))
data_mode = 'topdown'
data_root = 'data/'

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
val_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
    dataset=dict(
        type='CocoDataset',
        data_root=data_root,
        data_mode=data_mode,
        ann_file='coco/annotations/person_keypoints_val2017.json',
        bbox_file=f'{data_root}coco/person_detection_results/COCO_val2017_detections_AP_H_56_person.json',
        data_prefix=dict(img='coco/images/val2017/'),
        test_mode=True,
    ))
test_dataloader = val_dataloader

val_evaluator = dict(type='CocoMetric', ann_file=f'{data_root}coco/annotations/person_keypoints_val2017.json')
test_evaluator = val_evaluator
