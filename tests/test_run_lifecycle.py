"""A training run's life: default work dirs that never collide (two runs in the same second), ``--resume``
with a work dir, a finished run resumed (reported, exit 0, nothing touched), and Ctrl-C printing the
exact command that resumes it (that command is then run and finishes the run).

The runs are tiny (one random 160x120 image with two people, one or two epochs, in-process, one thread),
so nothing here needs ../shared.
"""
from __future__ import annotations

import shlex
from datetime import datetime
from pathlib import Path

import pytest

import train
from engine import latest_run, new_work_dir, resume_command
from engine import run_dir as run_dir_module
from models.checkpoints import read_checkpoint
from tests.conftest import SAMPLE_CONFIG, file_states, write_tiny_coco

FROZEN = datetime(2026, 1, 2, 3, 4, 5)
STAMP = '20260102030405'


# train.main points the project logger at each test's captured stdout: reset it afterwards
pytestmark = pytest.mark.usefixtures('fresh_project_logger')


@pytest.fixture
def frozen_clock(monkeypatch):
    """Every run starts in the same second."""
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return FROZEN

    monkeypatch.setattr(run_dir_module, 'datetime', Frozen)


@pytest.fixture(scope='module')
def tiny_cfg(tmp_path_factory) -> Path:
    """The quick start's config on one random image (2 people), from scratch, one epoch."""
    root = tmp_path_factory.mktemp('lifecycle')
    write_tiny_coco(root / 'data', n_people=2)
    data = f"{str(root / 'data') + '/'!r}"
    cfg = root / 'tiny.py'
    cfg.write_text(
        f"_base_ = [{str(SAMPLE_CONFIG)!r}]\n"
        f"data_root = {data}\n"
        "load_from = None\n"
        "model = dict(backbone=dict(init_cfg=None), test_cfg=dict(flip_test=False))\n"
        "train_cfg = dict(max_epochs=1, val_interval=1)\n"
        "stage2_num_epochs = 0\n"
        "vis_num_images = 0\n"
        "param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]\n"
        "train_dataloader = dict(batch_size=2, dataset=dict(datasets=[dict(type='CocoDataset', "
        "data_root=data_root, ann_file='ann.json', data_prefix=dict(img=''), pipeline=[])]))\n"
        "val_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root, ann_file='ann.json', "
        "bbox_file=None, data_prefix=dict(img='')))\n"
        "test_dataloader = val_dataloader\n"
        "val_evaluator = dict(ann_file=data_root + 'ann.json')\n")
    return cfg


def _train(cfg: Path, *extra) -> list[str]:
    return ['--cfg_file', str(cfg), '--device', 'cpu', *map(str, extra)]


def test_names_of_runs_started_in_the_same_second(tmp_path, frozen_clock):
    root = tmp_path / 'work_dirs'
    made = [new_work_dir('cfg', root) for _ in range(3)]
    assert [p.name for p in made] == [f'{STAMP}_cfg', f'{STAMP}_cfg_2', f'{STAMP}_cfg_3']
    assert all(p.is_dir() and not any(p.iterdir()) for p in made)
    # the newest run holding last.pth: by stamp (old minute stamps count as second 00), then number
    for name in ('202601020304_cfg', f'{STAMP}_cfg_2', f'{STAMP}_cfg_10', f'{STAMP}_cfg_2x', f'{STAMP}_cfgx'):
        (root / name).mkdir(exist_ok=True)
        (root / name / 'last.pth').write_bytes(b'x')
        (root / name / 'cfg.py').write_text('')
    assert latest_run('cfg', root) == root / f'{STAMP}_cfg_10'
    (root / f'{STAMP}_cfg_10' / 'cfg.py').unlink()  # then it is the first run of a config named cfg_10
    assert latest_run('cfg', root) == root / f'{STAMP}_cfg_2'
    assert latest_run('cfg_10', root) == root / f'{STAMP}_cfg_10'
    assert latest_run('other', root) is None


@pytest.mark.slow
def test_two_runs_in_the_same_second_then_resume_finished_and_longer(tiny_cfg, tmp_path, monkeypatch,
                                                                     frozen_clock, capsys):
    monkeypatch.chdir(tmp_path)  # default work dirs are relative: tmp_path/work_dirs
    assert train.main(_train(tiny_cfg)) == 0
    first = Path('work_dirs', f'{STAMP}_tiny')  # relative to the working directory, as the user sees it
    before = file_states(first)
    assert train.main(_train(tiny_cfg)) == 0  # the quick start, run twice in a row
    second = Path('work_dirs', f'{STAMP}_tiny_2')
    assert sorted(p.name for p in (tmp_path / 'work_dirs').iterdir()) == [first.name, second.name]
    last = read_checkpoint(second / 'last.pth')
    assert last['epoch'] == 1 and last['meta']['input_size'] == [192, 192]  # the codec's, checked at load
    assert file_states(first) == before
    capsys.readouterr()

    # --resume alone picks the newest run of the config; it is finished: said so, exit 0, nothing written
    states = file_states('work_dirs')
    assert train.main(_train(tiny_cfg, '--resume')) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and f'{second} holds a finished run: epoch 1 of 1 (train_cfg.max_epochs)' in \
        lines[0]
    best = read_checkpoint(second / 'best.pth')['best']
    assert f"best coco/AP = {best['score']:.4f} at epoch 1 ({second / 'best.pth'})" in lines[0]
    assert 'train_cfg.max_epochs=N' in lines[0]
    # --resume WORK_DIR: that run (not the newest), finished too
    assert train.main(_train(tiny_cfg, '--resume', first)) == 0
    assert f'{first} holds a finished run' in capsys.readouterr().out
    assert file_states('work_dirs') == states

    # with more epochs it continues in that work dir, from its last.pth
    assert train.main(_train(tiny_cfg, '--resume', first, '--cfg-options', 'train_cfg.max_epochs=2')) == 0
    log = (first / 'train.log').read_text()
    assert f'Resumed from {first / "last.pth"}: continuing at epoch 2 of 2' in log
    assert read_checkpoint(first / 'last.pth')['epoch'] == 2
    assert sorted(p.name for p in (tmp_path / 'work_dirs').iterdir()) == [first.name, second.name]
    assert file_states(second) == {k: v for k, v in states.items() if second in k.parents}


@pytest.mark.parametrize('stop_in', [1, 0], ids=['epoch2', 'epoch1'])
@pytest.mark.slow
def test_ctrl_c_prints_the_command_that_resumes(tiny_cfg, tmp_path, monkeypatch, capsys, stop_in):
    real_epoch = train.engine.train_one_epoch

    def interrupted(model, optim, loader, epoch, *args, **kwargs):
        if epoch == stop_in:
            raise KeyboardInterrupt
        return real_epoch(model, optim, loader, epoch, *args, **kwargs)

    monkeypatch.setattr(train.engine, 'train_one_epoch', interrupted)
    work = tmp_path / 'my run'
    options = ['train_cfg.max_epochs=2', 'codec.input_size=(192, 192)']
    argv = _train(tiny_cfg, '--work-dir', tmp_path / 'elsewhere', '--overwrite', '--work_dir', work,
                  '--cfg-options', *options)
    assert train.main(argv) == 130
    warned = [line for line in capsys.readouterr().out.splitlines() if 'WARNING: Interrupted' in line]
    assert len(warned) == 1
    state, command = warned[0].split(' with: ')
    expected = ['python', 'train.py', *_train(tiny_cfg), '--cfg-options', *options, '--work-dir', str(work)]
    if stop_in:
        assert state.endswith(f'{work / "last.pth"} holds epoch 1 of 2. Resume')
        assert shlex.split(command) == [*expected, '--resume']
    else:
        assert state.endswith('no epoch had finished, nothing was saved. Start again')
        assert shlex.split(command) == expected and not list(work.glob('*.pth'))
    assert not list(work.glob('*.tmp')) and not list(work.glob('.*.tmp'))

    monkeypatch.setattr(train.engine, 'train_one_epoch', real_epoch)
    assert train.main(shlex.split(command)[2:]) == 0  # the printed command finishes the run
    assert read_checkpoint(work / 'last.pth')['epoch'] == 2
    assert not (tmp_path / 'elsewhere').exists()


def test_resume_command_keeps_the_other_arguments():
    work = Path('work_dirs/run')
    assert resume_command(['c.py', '--resume', '--device', 'cpu'], work, 'auto') == \
        'python train.py c.py --device cpu --work-dir work_dirs/run --resume'
    argv = ['--resume', 'old/last.pth', 'c.py', '--work-dir=x', '--amp']
    assert resume_command(argv, work, 'old/last.pth') == \
        'python train.py c.py --amp --work-dir work_dirs/run --resume'
    assert resume_command(['c.py', '--resume_ckpt', 'w', '--overwr'], work, None, world_size=2) == \
        'torchrun --nproc_per_node=2 train.py c.py --work-dir work_dirs/run --resume'
