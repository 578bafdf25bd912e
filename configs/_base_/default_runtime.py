# Runtime defaults shared by every pose config: seeding, logging, checkpointing, evaluation keys.
randomness = dict(seed=None, deterministic=False)
log_interval = 50                  # iterations between log lines (and progress-bar postfix updates)
vis_num_images = 8                 # validation images drawn into val_epoch<E>_pred.jpg (0: none)
checkpoint = dict(save_best='coco/AP', rule='greater', save_last=True)
env_cfg = dict(cudnn_benchmark=True, dist_backend='nccl')  # off anyway with --deterministic
load_from = None                   # a checkpoint to initialise the whole model from
resume = False
