"""Two-process data-parallel training on CPU (torchrun, gloo): trains, validates on both shards, saves."""
import os
import re
import subprocess
import sys

import pytest

from datasets import build_dataloader
from evaluation import evaluate_model
from models import build_pose_estimator
from models.checkpoints import load_checkpoint, read_checkpoint
from tests.conftest import REPO, RLE_WEIGHTS, needs_data, needs_weights, tiny_config
from utils.config import Config
from utils.registry import METRICS


@needs_data
@needs_weights
@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path):
    # start from the trained model (load_from) with a tiny lr so that validation scores something
    cfg_file = tiny_config(tmp_path, 'rle', max_epochs=1, batch_size=2, extra=f"""
        load_from = '{RLE_WEIGHTS}'
        optim_wrapper = dict(optimizer=dict(lr=1e-7))
        sync_bn = True  # needs CUDA: warned about and skipped on CPU
        """)
    work_dir = tmp_path / 'work'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', 'train.py',
           '--cfg_file', str(cfg_file), '--work-dir', str(work_dir), '--device', 'cpu']
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = (work_dir / 'train.log').read_text()
    assert 'World size: 2' in log
    assert 'Epoch(train) [1][3/3]' in log  # 12 instances / (2 ranks x batch 2)
    assert read_checkpoint(work_dir / 'last.pth')['iter'] == 3

    # the AP logged by the two ranks (each predicted half of the people) equals one process scoring all
    ddp_ap = float(re.search(r'Epoch\(val\) \[1\]  coco/AP: ([0-9.]+)', log).group(1))
    cfg = Config.fromfile(cfg_file)
    model = build_pose_estimator(cfg.model)
    load_checkpoint(model, work_dir / 'last.pth')
    loader = build_dataloader(cfg.val_dataloader, seed=0, distributed=False)
    metric = METRICS.build(cfg.val_evaluator)
    single_ap = evaluate_model(model, loader, metric, 'cpu', progress=False)['coco/AP']
    assert single_ap > 0.3 and ddp_ap == pytest.approx(single_ap, abs=1e-4)
    assert read_checkpoint(work_dir / 'best.pth')['best']['score'] == pytest.approx(single_ap, abs=1e-9)
