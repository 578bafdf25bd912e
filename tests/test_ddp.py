"""Two-process data-parallel training on CPU (torchrun, gloo): trains, validates on both shards, saves."""
import os
import subprocess
import sys
from pathlib import Path

from tests.test_train import needs_data, tiny_config
from utils.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[1]


@needs_data
def test_torchrun_two_processes_on_cpu(tmp_path):
    cfg_file = tiny_config(tmp_path, 'rle', max_epochs=1, batch_size=2,
                           extra='sync_bn = True\n')  # SyncBN needs CUDA: warned and skipped on CPU
    work_dir = tmp_path / 'work'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', 'train.py',
           '--cfg_file', str(cfg_file), '--work-dir', str(work_dir), '--device', 'cpu']
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = (work_dir / 'train.log').read_text()
    assert 'World size: 2' in log
    assert 'Epoch(train) [1][3/3]' in log  # 12 instances / (2 ranks x batch 2)
    assert 'Epoch(val) [1]  coco/AP:' in log
    assert read_checkpoint(work_dir / 'last.pth')['iter'] == 3
    assert read_checkpoint(work_dir / 'best.pth')['best']['score'] is not None
