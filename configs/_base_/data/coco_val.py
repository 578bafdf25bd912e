# COCO val2017 evaluation on the AP_H_56 person detections (as MMPose reports its numbers), shared by
# every pose recipe. The recipe adds the pipeline (val_dataloader = dict(dataset=dict(pipeline=...))), built
# from its codec. `--cfg-options data_root=DIR/` moves every dataset and the evaluator's ann_file.
data_mode = 'topdown'
data_root = 'data/'

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
