# Runtime defaults shared by every pose config: seeding, logging, checkpointing, evaluation keys.
randomness = dict(seed=None, deterministic=False)
log_interval = 50                  # iterations between log lines (and progress-bar postfix updates)
vis_num_images = 8                 # validation images drawn into vis/val_pred_{last,best}.jpg (0: none)
checkpoint = dict(save_best='coco/AP', rule='greater', save_last=True)
env_cfg = dict(cudnn_benchmark=True, dist_backend='nccl')  # off anyway with --deterministic
load_from = None                   # a checkpoint to initialise the whole model from
resume = False
# 'device': decode, crop, augment and encode targets per batch on the training device (datasets/batched);
# 'cpu': the per-sample pipeline in loader workers; 'auto': 'device' when training on CUDA with a recipe it
# supports. train.py --input-pipeline overrides it.
input_pipeline = 'auto'
