"""Resume: a run killed (SIGKILL) mid-epoch and resumed with ``--resume`` ends with exactly the weights
of an uninterrupted run; Ctrl-C exits cleanly without half-written files. CPU, --deterministic."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from models.checkpoints import read_checkpoint
from tests.test_train import needs_data, tiny_config

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}  # both runs alike; one thread is fastest on a busy 2-core box


def command(cfg_file: Path, work_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, 'train.py', '--cfg_file', str(cfg_file), '--work-dir', str(work_dir),
            '--device', 'cpu', '--deterministic', *extra]


def start_and_wait_for(cmd: list[str], log: Path, marker: str, timeout: float = 300) -> subprocess.Popen:
    """Start ``cmd`` and return once ``marker`` appears in ``log`` (the process keeps running)."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    deadline = time.monotonic() + timeout
    while not (log.is_file() and marker in log.read_text()):
        if proc.poll() is not None:
            err = proc.stderr.read().decode()[-2000:]
            raise AssertionError(f'training exited early ({proc.returncode}): {err}')
        assert time.monotonic() < deadline, f'{marker!r} not logged within {timeout} s'
        time.sleep(0.01)
    return proc


def run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]


@needs_data
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    # 12 training instances, batch 2: 6 iterations per epoch; validation only after the last epoch
    cfg_file = tiny_config(tmp_path, 'rle', max_epochs=2, batch_size=2,
                           extra='train_cfg = dict(max_epochs=2, val_interval=2)\n')
    straight, interrupted = tmp_path / 'straight', tmp_path / 'interrupted'
    run(command(cfg_file, straight))

    log = interrupted / 'train.log'
    proc = start_and_wait_for(command(cfg_file, interrupted), log, 'Epoch(train) [2][2/6]')
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_checkpoint(interrupted / 'last.pth')['epoch'] == 1  # killed inside epoch 2
    run(command(cfg_file, interrupted, '--resume'))
    assert 'Resumed from' in (interrupted / 'train.log').read_text()

    a, b = read_checkpoint(straight / 'last.pth'), read_checkpoint(interrupted / 'last.pth')
    assert a['state_dict'].keys() == b['state_dict'].keys()
    different = [k for k in a['state_dict'] if not torch.equal(a['state_dict'][k], b['state_dict'][k])]
    assert not different
    for pid, state in a['optimizer']['optimizer']['state'].items():
        other = b['optimizer']['optimizer']['state'][pid]
        assert all(torch.equal(state[k], other[k]) for k in state)
    assert a['schedulers'] == b['schedulers'] and a['best'] == b['best']


@needs_data
def test_ctrl_c_exits_cleanly(tmp_path):
    cfg_file = tiny_config(tmp_path, 'rle', max_epochs=2)
    work_dir = tmp_path / 'work'
    proc = start_and_wait_for(command(cfg_file, work_dir), work_dir / 'train.log', 'Epoch(train) [1][1/3]')
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    assert 'Interrupted' in (work_dir / 'train.log').read_text()
    assert not list(work_dir.glob('*.tmp')) and not list(work_dir.glob('.*.tmp'))
    assert 'Traceback' not in proc.stderr.read().decode()
