# Quick start: the RLE-0.5x recipe fine-tuned for a few epochs on the 4-image COCO sample beside the
# repository (../shared/data), starting from the published RLE-0.5x weights (../shared/weights) and
# validated on ground-truth boxes, so the reported AP is meaningful. Run from the repository root:
#   python train.py --cfg_file configs/rle/rle_mbv2-0.5x_coco-sample-192x192.py --device cpu
# Drop `load_from` (--cfg-options load_from=None) to train the head from scratch on the pretrained backbone.
_base_ = ['./rle_mbv2-0.5x_aic-coco-192x192.py']

data_root = '../shared/data/'
max_epochs = 3
stage2_num_epochs = 1
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
base_lr = 1e-4  # gentle: fine-tuning published weights on 12 people
optim_wrapper = dict(optimizer=dict(lr=base_lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
    dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, begin=1, end=max_epochs, T_max=max_epochs - 1,
         by_epoch=True, convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=8)
log_interval = 1

load_from = '../shared/weights/rle_mbv2-0.5x_aic-coco-192x192_202403131203.pth'
model = dict(backbone=dict(init_cfg=dict(
    checkpoint='../shared/weights/mobilenetv2_0.5x_udp_coco_aic_backbone_192x192.pth')))

train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False, dataset=dict(datasets=[
    dict(type='CocoDataset', data_root=data_root, data_mode=data_mode, ann_file='coco/test_coco.json',
         data_prefix=dict(img='coco/'), pipeline=[])]))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='coco/test_coco.json', bbox_file=None,
                 data_prefix=dict(img='coco/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=f'{data_root}coco/test_coco.json')
test_evaluator = val_evaluator
