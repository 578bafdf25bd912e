# MMPose's official top-down COCO schedule: 210 epochs of Adam (configs set the lr), 500-iteration
# linear warm-up, x0.1 at epochs 170 and 200.
train_cfg = dict(max_epochs=210, val_interval=10)

optim_wrapper = dict(optimizer=dict(type='Adam', lr=5e-4))
param_scheduler = [
    dict(type='LinearLR', begin=0, end=500, start_factor=0.001, by_epoch=False),
    dict(type='MultiStepLR', begin=0, end=210, milestones=[170, 200], gamma=0.1, by_epoch=True),
]

auto_scale_lr = dict(base_batch_size=512)
