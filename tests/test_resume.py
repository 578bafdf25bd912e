"""Resume: a run killed (SIGKILL) mid-epoch and resumed with ``--resume`` ends with exactly the weights
of an uninterrupted run; Ctrl-C exits cleanly without half-written files and says how to go on. CPU,
--deterministic."""
import shlex
import signal

import pytest
import torch

from models.checkpoints import read_checkpoint
from tests.conftest import needs_data, start_and_wait_for, tiny_config, train_command


@needs_data
@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path, run_training):
    # 12 training instances, batch 2: 6 iterations per epoch; validation only after the last epoch
    cfg_file = tiny_config(tmp_path, 'rle', max_epochs=2, batch_size=2,
                           extra='train_cfg = dict(max_epochs=2, val_interval=2)\n')
    straight, interrupted = tmp_path / 'straight', tmp_path / 'interrupted'
    run_training(train_command(cfg_file, straight))

    log = interrupted / 'train.log'
    proc = start_and_wait_for(train_command(cfg_file, interrupted), log, 'Epoch(train) [2][2/6]')
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_checkpoint(interrupted / 'last.pth')['epoch'] == 1  # killed inside epoch 2
    run_training(train_command(cfg_file, interrupted, '--resume'))
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
@pytest.mark.slow
def test_ctrl_c_exits_cleanly(tmp_path):
    cfg_file = tiny_config(tmp_path, 'rle', max_epochs=2)
    work_dir = tmp_path / 'work'
    proc = start_and_wait_for(train_command(cfg_file, work_dir), work_dir / 'train.log',
                              'Epoch(train) [1][1/3]')
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    log = (work_dir / 'train.log').read_text()
    again = ['python', 'train.py', '--cfg_file', str(cfg_file), '--device', 'cpu', '--deterministic',
             '--work-dir', str(work_dir)]  # the same arguments, --work-dir last (no --resume: nothing saved)
    assert 'Interrupted: nothing half-written; no epoch had finished, nothing was saved. Start again with: ' \
        f'{shlex.join(again)}\n' in log
    assert not list(work_dir.glob('*.tmp')) and not list(work_dir.glob('.*.tmp'))
    assert 'Traceback' not in proc.stderr.read().decode()
