# The 192x192 SimCC-0.75x recipe on 256x192 (w x h = 192 x 256) crops (1,421,105 parameters).
_base_ = ['./simcc_mbv2-0.75x-wo-deconv_aic-coco-192x192.py']

codec = dict(codec, input_size=(192, 256))

model = dict(head=dict(
    input_size=codec['input_size'],
    in_featuremap_size=tuple(s // 32 for s in codec['input_size']),
    decoder=codec))

train_dataloader, val_dataloader = aic_coco_pipelines(codec)
test_dataloader = val_dataloader
