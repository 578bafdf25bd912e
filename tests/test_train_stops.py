"""Training stops cleanly and exactly: a NaN/inf loss is reported with its first iteration and term even
when noticed at a later log line; with two ranks, a problem on either rank (rank 0, which hosts the
process group's store, included) stops both with one message within seconds (no hang); a resume restores
exactly from a checkpoint read to the CPU, whatever device wrote its RNG states."""
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

import train
import utils.dist
from engine import LossModel, NonFiniteLossError, StepStats, checkpoint_payload, restore, train_step
from engine.loop import agree_first_bad, watch_for_peer_stop
from models import build_pose_estimator
from models.checkpoints import read_checkpoint, save_checkpoint
from models.heads.rle_head import RLEHead
from optim import build_ema, build_optimizer, build_schedulers
from tests.conftest import REPO, codec_batch, free_port, needs_data, tiny_config
from utils.config import load_config
from utils.dist import (
    STOP_KEY,
    STORE_GONE,
    RunStopped,
    acknowledge_stop,
    announce_stop,
    leaving,
    peer_stop_message,
    peer_stopped,
)

NAN = float('nan')
LEFT = 'mmpose_clean/left/'  # + rank: that rank has left, or read the stop message
LAUNCH_VARIABLES = ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')


def test_step_stats_name_the_first_bad_iteration_after_one_read_back():
    stats = StepStats(capacity=4)
    values = [(1.0, 0.5), (NAN, 0.5), (float('inf'), 0.5), (2.0, 0.5)]
    for it, (loss, acc) in enumerate(values, start=10):
        stats.push(it, {'loss_kpt': torch.tensor(loss), 'acc_pose': torch.tensor(acc)},
                   torch.tensor(3.0) if it % 2 else None)
    assert stats.readbacks == 0 and stats.first_bad is None
    means = stats.means()
    assert stats.readbacks == 1 and stats.first_bad[:2] == (11, 'loss_kpt')
    assert means['acc_pose'] == 0.5 and means['grad_norm'] == 3.0  # only iterations that stepped
    message = agree_first_bad(stats.first_bad, stats.names, torch.device('cpu'))
    assert message.startswith('non-finite loss at iteration 12: loss_kpt = nan.')
    stats.push(14, {'loss_kpt': torch.tensor(1.0), 'acc_pose': torch.tensor(1.0)}, None)
    assert stats.first_bad[0] == 11  # the first one stays


@needs_data
@pytest.mark.slow
def test_rle_prediction_with_inf_stops_naming_iteration_and_term(tmp_path, monkeypatch):
    # 3 iterations per epoch, a log line every 3: iteration 5 (epoch 2) is poisoned, noticed at iteration 6
    cfg_file = tiny_config(tmp_path, 'rle', max_epochs=2, extra='log_interval = 3\n')
    real_forward = RLEHead.forward
    calls = []

    def poisoned(self, feats):
        outputs = real_forward(self, feats)
        if self.training:
            calls.append(1)
            if len(calls) == 5:
                outputs = outputs.clone()
                outputs[0, 0, 0] = float('inf')
        return outputs

    monkeypatch.setattr(RLEHead, 'forward', poisoned)
    work_dir = tmp_path / 'work'
    with pytest.raises(NonFiniteLossError):  # run_main prints it as the one error line
        train.main(['--cfg_file', str(cfg_file), '--work-dir', str(work_dir), '--device', 'cpu'])
    log = (work_dir / 'train.log').read_text()
    assert re.search(r'non-finite loss at iteration 5: loss_kpt = (nan|inf)\.', log), log[-2000:]
    assert 'Epoch(train) [2]' not in log  # stopped at the epoch's log line, before logging it
    assert read_checkpoint(work_dir / 'last.pth')['epoch'] == 1  # epoch 1's checkpoint, untouched


DRIVER = """
    import os, sys
    sys.path.insert(0, {repo!r})
    import torch
    import train
    from engine import LossModel

    real, calls = LossModel.forward, []

    def on_one_rank(self, inputs, targets):
        losses = real(self, inputs, targets)
        calls.append(1)
        if os.environ['RANK'] == '{rank}' and len(calls) == 2:
            {action}
        return losses

    LossModel.forward = on_one_rank
    from utils.cli import run_main
    run_main(train.main)
    """


def run_two_ranks(tmp_path: Path, action: str, rank: int = 1, srun: bool = False
                  ) -> tuple[list[subprocess.CompletedProcess], float, Path]:
    """train.py as two gloo ranks (plain processes, no torchrun: each rank's output and exit code apart,
    and the process group's store lives in rank 0's process); ``action`` runs on ``rank`` in its second
    iteration. 3 iterations per epoch, one log line at the end; a collective gives up after 60 s.
    ``srun``: the processes get SLURM's variables, as two tasks of ``srun`` on this machine, instead of
    torchrun's."""
    cfg_file = tiny_config(tmp_path, 'rle', max_epochs=1, batch_size=2,
                           extra='log_interval = 3\nenv_cfg = dict(dist_timeout=60)\n')
    driver = tmp_path / 'driver.py'
    driver.write_text(textwrap.dedent(DRIVER.format(repo=str(REPO), action=action, rank=rank)))
    work_dir = tmp_path / 'work'
    port = str(free_port())
    procs = []
    for task in (0, 1):
        launch = {'SLURM_PROCID': str(task), 'SLURM_LOCALID': str(task), 'SLURM_NTASKS': '2',
                  'SLURM_NODELIST': 'localhost', 'MASTER_PORT': port} if srun else \
                 {'RANK': str(task), 'LOCAL_RANK': str(task), 'WORLD_SIZE': '2', 'MASTER_ADDR': '127.0.0.1',
                  'MASTER_PORT': port}
        env = {key: value for key, value in os.environ.items()  # neither launcher's variables of this shell
               if not key.startswith('SLURM_') and key not in LAUNCH_VARIABLES}
        procs.append(subprocess.Popen(
            [sys.executable, str(driver), '--cfg_file', str(cfg_file), '--work-dir', str(work_dir),
             '--device', 'cpu'], cwd=REPO, env={**env, 'OMP_NUM_THREADS': '1', **launch}, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results, first_exit = [], None
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            first_exit = first_exit or time.monotonic()
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        for proc in procs:
            proc.kill()
    return results, time.monotonic() - first_exit, work_dir


@needs_data
@pytest.mark.slow
def test_non_finite_loss_on_rank_1_stops_both_ranks_with_one_message(tmp_path):
    poison = "losses['loss_kpt'] = losses['loss_kpt'] * float('nan')"
    results, spread, work_dir = run_two_ranks(tmp_path, poison)
    expected = 'non-finite loss at iteration 2: loss_kpt = nan (rank 1).'
    for rank, result in enumerate(results):
        assert result.returncode == 1, (rank, result.stderr[-3000:])
    assert f'error: {expected}' in results[0].stderr, results[0].stderr[-2000:]
    assert expected in (work_dir / 'train.log').read_text()
    # every rank raises it: printed once, by the first process of the machine
    assert 'error:' not in results[1].stdout + results[1].stderr, results[1].stderr[-2000:]
    assert spread < 30, f'the second rank exited {spread:.1f} s after the first'
    assert not (work_dir / 'last.pth').exists()


@needs_data
@pytest.mark.slow
def test_out_of_memory_on_rank_1_stops_both_ranks_with_its_message(tmp_path):
    results, spread, work_dir = run_two_ranks(
        tmp_path, "raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')")
    for rank, result in enumerate(results):
        assert result.returncode == 1, (rank, result.stderr[-3000:])
        message = 'rank 1: CUDA out of memory at batch size 2 per GPU (2 GPUs)'
        assert message in result.stdout + result.stderr, (rank, result.stdout[-2000:], result.stderr[-2000:])
    assert spread < 30, f'the second rank exited {spread:.1f} s after the first'
    assert not (work_dir / 'last.pth').exists()


@needs_data
@pytest.mark.slow
def test_a_failure_on_rank_0_stops_both_ranks_with_its_message(tmp_path):
    """Rank 0 hosts the process group's store: it waits until rank 1 (its watcher) has read the message,
    so rank 1 ends with rank 0's reason rather than a connection error or a collective's timeout. The
    two processes are launched as srun's tasks are (their ranks from SLURM's variables)."""
    action = "from utils.errors import DataError; raise DataError('broken.jpg: not a JPEG file')"
    results, spread, work_dir = run_two_ranks(tmp_path, action, rank=0, srun=True)
    message = 'rank 0: DataError: broken.jpg: not a JPEG file'
    for rank, result in enumerate(results):
        assert result.returncode == 1, (rank, result.stderr[-3000:])
        assert f'error: {message}' in result.stderr, (rank, result.stdout[-2000:], result.stderr[-2000:])
        assert 'Traceback' not in result.stderr, (rank, result.stderr[-3000:])
    assert spread < 30, f'the second rank exited {spread:.1f} s after the first'
    assert not (work_dir / 'last.pth').exists()


def test_resume_restores_exactly_from_a_checkpoint_of_another_device(tmp_path):
    """A checkpoint read with map_location='cpu' restores model, EMA, optimizer and schedulers bit for
    bit; RNG states written by older versions (here as if from 8 GPUs, on 'meta') do not matter."""
    cfg = load_config(REPO / 'configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py')
    cfg.codec['input_size'] = (64, 64)  # small crops: a fast step (the head pools globally)
    ema_cfg = dict(type='ExpMomentumEMA', momentum=0.0002, update_buffers=True)

    def build():
        torch.manual_seed(0)
        model = build_pose_estimator(cfg.model)
        optim = build_optimizer(model, cfg.optim_wrapper)
        return model, LossModel(model).train(), optim, build_schedulers(optim, cfg.param_scheduler, 10, 20), \
            build_ema(model, ema_cfg)

    batch = codec_batch(cfg, 2)
    model, train_model, optim, schedulers, ema = build()
    for it in range(2):
        train_step(train_model, optim, batch, it, None, ema, schedulers)
    payload = checkpoint_payload(model, ema, optim, schedulers, cfg, 1, 2, {'score': None})
    payload['rng'] = {'torch': torch.empty(5056, dtype=torch.uint8, device='meta'),
                      'cuda': [torch.empty(16, dtype=torch.uint8, device='meta')] * 8}
    save_checkpoint(tmp_path / 'last.pth', payload)

    model2, train_model2, optim2, schedulers2, ema2 = build()
    restore(read_checkpoint(tmp_path / 'last.pth', map_location='cpu'), model2, ema2, optim2, schedulers2)
    for it in (2, 3):  # both continue identically
        train_step(train_model, optim, batch, it, None, ema, schedulers)
        train_step(train_model2, optim2, batch, it, None, ema2, schedulers2)
    for a, b in ((model, model2), (ema.module, ema2.module)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [s.state_dict() for s in schedulers] == [s.state_dict() for s in schedulers2]
    assert np.isclose(optim.param_groups[0]['lr'], optim2.param_groups[0]['lr'], rtol=0, atol=0)


@pytest.fixture
def stop_channel(monkeypatch):
    """The stop protocol as rank 1 of 2, on an in-memory store (no process group), from a fresh state."""
    store = dist.HashStore()
    monkeypatch.setattr(utils.dist, '_group', lambda: (store, 1, 2))
    monkeypatch.setitem(utils.dist._peer, 'message', None)
    monkeypatch.setattr(utils.dist, '_leaving', threading.Event())
    return store


def join_watch() -> bool:
    """Whether the watcher thread has ended (waits for it at most 10 s)."""
    for thread in threading.enumerate():
        if thread.name == 'peer-stop-watch':
            thread.join(10)
    return not any(t.name == 'peer-stop-watch' for t in threading.enumerate())


def test_peer_stop_message_is_another_ranks_and_outlives_the_store(stop_channel):
    stop_channel.set(STOP_KEY, 'rank 1: my own stop')
    assert peer_stop_message() is None  # this rank's own message
    stop_channel.set(STOP_KEY, 'rank 0: CUDA out of memory')
    assert peer_stop_message() == 'rank 0: CUDA out of memory'
    stop_channel.delete_key(STOP_KEY)  # as if rank 0 had gone with its store: the message was kept
    stopped = peer_stopped()
    assert isinstance(stopped, RunStopped) and str(stopped) == 'rank 0: CUDA out of memory'
    assert stop_channel.check([f'{LEFT}1']) and leaving()  # acknowledged; this rank now leaves


def test_a_store_that_is_gone_means_its_host_stopped(monkeypatch, stop_channel):
    class GoneStore:
        def __getattr__(self, name):
            raise dist.DistNetworkError('Connection reset by peer')

    monkeypatch.setattr(utils.dist, '_group', lambda: (GoneStore(), 1, 2))
    assert peer_stop_message() == STORE_GONE
    acknowledge_stop()  # does not touch the store again
    assert announce_stop('my reason') == 'rank 1: my reason'  # never raises


def test_rank_0_announces_the_first_message_and_waits_for_the_others(monkeypatch, stop_channel):
    monkeypatch.setattr(utils.dist, '_group', lambda: (stop_channel, 0, 3))
    monkeypatch.setattr(utils.dist, 'ACK_TIMEOUT', 0.05)  # rank 2 never answers here
    stop_channel.set(f'{LEFT}1', '1')
    assert announce_stop('out of memory') == 'rank 0: out of memory'
    assert stop_channel.get(STOP_KEY) == b'rank 0: out of memory' and leaving()
    stop_channel.set(f'{LEFT}2', '1')
    assert announce_stop('later') == 'rank 0: later'
    assert stop_channel.get(STOP_KEY) == b'rank 0: out of memory'  # the first message stays


def test_watch_ends_a_stuck_rank_with_the_peers_message(stop_channel):
    """NCCL: the main thread never returns from its collective, so the watcher reports the peer's message
    and ends the process (here: recorded), after acknowledging it so that rank 0 may exit."""
    seen, exited = [], threading.Event()
    done = watch_for_peer_stop(seen.append, interval=0.01, grace=0.01, exit_process=lambda code: exited.set())
    stop_channel.set(STOP_KEY, 'rank 0: CUDA out of memory')
    assert exited.wait(10) and seen == ['rank 0: CUDA out of memory']
    assert stop_channel.check([f'{LEFT}1'])
    done.set()
    assert join_watch()


def test_watch_leaves_a_rank_that_stops_by_itself_alone(stop_channel):
    """gloo: the main thread's collective fails when the peer leaves and it reports the message itself
    (here: ends the watch within the grace period), so the watcher neither reports nor exits."""
    seen, exited = [], threading.Event()
    done = watch_for_peer_stop(seen.append, interval=0.01, grace=60, exit_process=lambda code: exited.set())
    stop_channel.set(STOP_KEY, 'rank 0: CUDA out of memory')
    stop_channel.wait([f'{LEFT}1'], timedelta(seconds=10))  # acknowledged
    done.set()
    assert join_watch() and not seen and not exited.is_set()
