# COCO (x3) + AI Challenger (mapped to the 17 COCO keypoints) training, COCO val2017 evaluation with
# the AP_H_56 person detections. Configs add the pipelines:
#   train_dataloader = dict(dataset=dict(pipeline=..., pipeline_stage2=...))
#   val_dataloader = test_dataloader = dict(dataset=dict(pipeline=...))
data_mode = 'topdown'
data_root = 'data/'

dataset_coco = dict(
    type='RepeatDataset',
    dataset=dict(
        type='CocoDataset',
        data_root=data_root,
        data_mode=data_mode,
        ann_file='coco/annotations/person_keypoints_train2017.json',
        data_prefix=dict(img='coco/images/train2017/'),
        pipeline=[],
    ),
    times=3)

# AIC keypoint index -> COCO keypoint index
dataset_aic = dict(
    type='AicDataset',
    data_root=data_root,
    data_mode=data_mode,
    ann_file='aic/annotations/aic_train.json',
    data_prefix=dict(img='aic/ai_challenger_keypoint_train_20170909/keypoint_train_images_20170902/'),
    pipeline=[
        dict(type='KeypointConverter', num_keypoints=17,
             mapping=[(0, 6), (1, 8), (2, 10), (3, 5), (4, 7), (5, 9), (6, 12), (7, 14), (8, 16), (9, 11),
                      (10, 13), (11, 15)])
    ],
)

train_dataloader = dict(
    batch_size=256,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='CombinedDataset',
        metainfo=dict(from_file='configs/_base_/datasets/coco.py'),
        datasets=[dataset_coco, dataset_aic],
        test_mode=False,
    ))
val_dataloader = dict(
    batch_size=64,
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
