# COCO train2017 (x3) + AI Challenger (its 14 joints mapped onto COCO's 17) training and the shared
# COCO val2017 evaluation. Recipes add the pipelines to the combined dataset (each sub-dataset keeps its
# own: AIC's KeypointConverter): dict(dataset=dict(pipeline=..., pipeline_stage2=...)).
_base_ = './coco_topdown.py'

# AIC keypoint index -> COCO keypoint index
_aic_to_coco = [(0, 6), (1, 8), (2, 10), (3, 5), (4, 7), (5, 9), (6, 12), (7, 14), (8, 16), (9, 11),
                (10, 13), (11, 15)]

train_dataloader = dict(
    batch_size=256,
    num_workers=8,
    dataset=dict(
        _delete_=True,
        type='CombinedDataset',
        metainfo=dict(from_file='configs/_base_/datasets/coco.py'),
        datasets=[
            dict(type='RepeatDataset', times=3, dataset=dict(train_dataloader['dataset'], pipeline=[])),
            dict(type='AicDataset', data_root=data_root, data_mode=data_mode,
                 ann_file='aic/annotations/aic_train.json',
                 data_prefix=dict(img='aic/ai_challenger_keypoint_train_20170909/keypoint_train_images_20170902/'),
                 pipeline=[dict(type='KeypointConverter', num_keypoints=17, mapping=_aic_to_coco)]),
        ],
        test_mode=False,
    ))
val_dataloader = dict(batch_size=64)
test_dataloader = val_dataloader
