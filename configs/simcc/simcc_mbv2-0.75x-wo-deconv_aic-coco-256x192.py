# The 192x192 SimCC-0.75x recipe on 256x192 (w x h = 192 x 256) crops (1,421,105 parameters).
from configs._base_.topdown_pipelines import aic_coco_pipelines

_base_ = ['./simcc_mbv2-0.75x-wo-deconv_aic-coco-192x192.py']

codec = dict(type='SimCCLabel', input_size=(192, 256), sigma=6.0, simcc_split_ratio=2.0)

model = dict(head=dict(
    input_size=codec['input_size'],
    in_featuremap_size=tuple(s // 32 for s in codec['input_size']),
    decoder=codec))

train_pipeline, train_pipeline_stage2, val_pipeline = aic_coco_pipelines(codec)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline, pipeline_stage2=train_pipeline_stage2))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
