# The original MMPose_Clean schedule for COCO+AIC: 420 epochs of AdamW, 1000-iteration linear warm-up,
# cosine decay to 5% over the second half; the last `stage2_num_epochs` use the lighter stage-2 pipeline.
max_epochs = 420
stage2_num_epochs = 30
base_lr = 4e-3

train_cfg = dict(max_epochs=max_epochs, val_interval=1)
randomness = dict(seed=3407)

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=base_lr, weight_decay=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0e-5, by_epoch=False, begin=0, end=1000),
    dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, begin=max_epochs // 2, end=max_epochs,
         T_max=max_epochs // 2, by_epoch=True, convert_to_iter_based=True),
]

# the learning rate above is for this total batch size; scaled linearly when enabled
auto_scale_lr = dict(base_batch_size=1024)
