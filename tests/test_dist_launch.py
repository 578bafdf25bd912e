"""Launching on several processes and machines: torchrun's and SLURM's variables, a run over two torchrun
"nodes", and what the user sees when a torchrun run stops on a mistake: one ``error:`` line, named by
torchrun's failure summary as the root cause."""
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import utils.dist
from tests.conftest import REPO, SAMPLE_CONFIG, TRAIN_ENV, file_states, free_port, needs_data, tiny_config
from utils.cli import ArgumentParser, run_main, run_on_rank_0
from utils.config_dict import ConfigError
from utils.dist import (
    DEFAULT_TIMEOUT,
    first_slurm_host,
    init_distributed,
    launch_ranks,
    mark_same_on_every_rank,
    process_group_settings,
    slurm_environment,
)
from utils.errors import DataError, ReportedError, SettingsError

SLURM = {'SLURM_PROCID': '5', 'SLURM_LOCALID': '1', 'SLURM_NTASKS': '8',
         'SLURM_NODELIST': 'gpu[07-09,12],cpu1'}


def test_ranks_come_from_torchrun_else_from_slurm():
    torchrun = {'RANK': '3', 'LOCAL_RANK': '1', 'WORLD_SIZE': '4'}
    assert launch_ranks(torchrun) == (3, 1, 4)
    assert launch_ranks({**SLURM, **torchrun}) == (3, 1, 4)  # torchrun inside a SLURM job
    assert launch_ranks(SLURM) == (5, 1, 8)
    assert launch_ranks({'SLURM_PROCID': '0', 'SLURM_NTASKS': '1'}) == (0, 0, 1)  # python train.py in a job
    assert launch_ranks({}) == (0, 0, 1)


def test_srun_tasks_get_torchruns_variables(monkeypatch):
    monkeypatch.setattr(utils.dist.shutil, 'which', lambda name: None)  # no scontrol: parsed here
    assert slurm_environment(SLURM) == {'RANK': '5', 'LOCAL_RANK': '1', 'WORLD_SIZE': '8',
                                        'MASTER_ADDR': 'gpu07', 'MASTER_PORT': '29500'}
    mine = slurm_environment({**SLURM, 'MASTER_ADDR': 'head', 'MASTER_PORT': '1234'})
    assert (mine['MASTER_ADDR'], mine['MASTER_PORT']) == ('head', '1234')
    assert slurm_environment({**SLURM, 'WORLD_SIZE': '8'}) == {}  # torchrun's own
    assert slurm_environment({'SLURM_PROCID': '0', 'SLURM_NTASKS': '1', 'SLURM_NODELIST': 'a1'}) == {}


@pytest.mark.parametrize('nodelist, first', [
    ('node1', 'node1'), ('node1,node2', 'node1'), ('gpu[07-09,12],cpu1', 'gpu07'), ('gpu[3,5-6]', 'gpu3'),
    ('rack[1-2]-n[3,5]', 'rack1-n3'), ('10.0.0.[4-7]', '10.0.0.4'), (' a-b[001-100] ', 'a-b001')])
def test_first_host_of_a_slurm_node_list(monkeypatch, nodelist, first):
    monkeypatch.setattr(utils.dist.shutil, 'which', lambda name: None)
    assert first_slurm_host(nodelist) == first


def test_first_host_asks_scontrol_when_there_is_one(tmp_path, monkeypatch):
    scontrol = tmp_path / 'scontrol'
    scontrol.write_text('#!/bin/sh\n'
                        '[ "$1 $2 $3" = "show hostnames n[1-2]" ] && printf "n1.cluster\\nn2\\n"\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv('PATH', f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert first_slurm_host('n[1-2]') == 'n1.cluster'


def test_process_group_settings_and_their_checks():
    assert process_group_settings(None) == (None, DEFAULT_TIMEOUT)
    assert process_group_settings({'dist_backend': 'gloo', 'dist_timeout': 60}) == ('gloo', 60.0)
    assert process_group_settings({'dist_cfg': {'backend': 'nccl', 'timeout': 1800}}) == ('nccl', 1800.0)
    with pytest.raises(SettingsError, match=r'env_cfg\.dist_timeout = 0: .*above 0'):
        process_group_settings({'dist_timeout': 0})
    with pytest.raises(SettingsError, match=r"env_cfg\.dist_cfg\.timeout = '30'"):
        process_group_settings({'dist_cfg': {'timeout': '30'}})


@pytest.mark.parametrize('local_rank, printed', [('0', True), ('1', False)])
def test_an_error_every_rank_raises_is_printed_once_per_machine_and_recorded_for_torchrun(
        tmp_path, monkeypatch, capsys, local_rank, printed):
    error_file = tmp_path / 'error.json'
    monkeypatch.setattr(utils.dist, '_leaving', threading.Event())
    monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.setenv('RANK', local_rank)
    monkeypatch.setenv('LOCAL_RANK', local_rank)
    monkeypatch.setenv('TORCHELASTIC_ERROR_FILE', str(error_file))

    def main(argv):
        raise mark_same_on_every_rank(DataError('a.json: image id 7 repeated'))

    with pytest.raises(SystemExit) as info:
        run_main(main, [])
    assert info.value.code == 2
    assert capsys.readouterr().err == ('error: a.json: image id 7 repeated\n' if printed else '')
    recorded = json.loads(error_file.read_text())['message']
    line = 'error: a.json: image id 7 repeated'
    assert recorded['message'] == recorded['extraInfo']['py_callstack'] == line

    def config_typo(argv):  # a mistake in the config: raised alike by every rank wherever it is found
        raise ConfigError("train_cfg has no key 'max_epoch'")

    with pytest.raises(SystemExit):
        run_main(config_typo, [])
    assert capsys.readouterr().err == ("error: train_cfg has no key 'max_epoch'\n" if printed else '')

    def rank_specific(argv):  # not marked: printed by whichever rank raised it
        raise DataError('b.jpg: not a JPEG file')

    with pytest.raises(SystemExit):
        run_main(rank_specific, [])
    assert capsys.readouterr().err == 'error: b.jpg: not a JPEG file\n'


@pytest.mark.parametrize('local_rank, printed', [('0', True), ('1', False)])
def test_a_usage_error_is_printed_once_per_machine_and_recorded_for_torchrun(
        tmp_path, monkeypatch, capsys, local_rank, printed):
    """Every rank parses the same command line: its first process prints the usage error."""
    error_file = tmp_path / 'error.json'
    monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.setenv('RANK', local_rank)
    monkeypatch.setenv('LOCAL_RANK', local_rank)
    monkeypatch.setenv('TORCHELASTIC_ERROR_FILE', str(error_file))
    parser = ArgumentParser(prog='train.py')
    parser.add_argument('--device')
    with pytest.raises(SystemExit) as info:
        parser.parse_args(['--devcie', 'cpu'])
    line = 'error: unrecognized arguments: --devcie cpu (see train.py --help)'
    assert info.value.code == 2
    assert capsys.readouterr().err == (line + '\n' if printed else '')
    assert json.loads(error_file.read_text())['message']['message'] == line


def test_rank_0_checks_run_in_place_without_a_process_group():
    def refuse():
        raise DataError('work dir holds last.pth')

    assert run_on_rank_0(lambda: 42) == 42
    with pytest.raises(DataError, match='last.pth'):
        run_on_rank_0(refuse)


# ------------------------------------------------------------------ torchrun, 2 processes on the CPU (gloo)
BOUNDED = 'env_cfg = dict(dist_timeout=120)\n'  # a rank waits at most 2 minutes for the others
def torchrun(cfg_file: Path, work_dir: str, *extra: str, cwd: Path = REPO,
             launcher: tuple[str, ...] = ('--standalone', '--nproc_per_node', '2')) -> subprocess.Popen:
    """train.py under torchrun on the CPU, in a session of its own (see :func:`finish`)."""
    cmd = [sys.executable, '-m', 'torch.distributed.run', *launcher, str(REPO / 'train.py'), str(cfg_file),
           '--work-dir', work_dir, '--device', 'cpu', *extra]
    return subprocess.Popen(cmd, cwd=cwd, env=TRAIN_ENV, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


def finish(procs: list[subprocess.Popen]) -> list[str]:
    """The outputs of torchrun runs, waiting at most 300 s for each; whatever is left of them then (the
    launchers and their workers) is killed."""
    try:
        return [proc.communicate(timeout=300)[0] for proc in procs]
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def failed_run(proc: subprocess.Popen) -> tuple[str, list[str]]:
    """(the one ``error:`` line, all lines) of a torchrun run that failed; checks the shape of its output."""
    out, = finish([proc])
    lines = out.splitlines()
    errors = [line for line in lines if line.startswith('error: ')]
    assert proc.returncode != 0 and len(errors) == 1, out
    assert not any(line.startswith('[rank') for line in lines), out  # no rank's traceback
    root_cause = out[out.index('Root Cause'):]
    assert re.search(r'error_file: \S+error\.json\n  traceback : ' + re.escape(errors[0]), root_cause), out
    assert len(lines) <= 45, out  # torchrun's own report included; the rank-1 traceback made it 63
    return errors[0], lines


@needs_data
@pytest.mark.slow
def test_a_work_dir_refused_by_rank_0_stops_every_rank_with_one_line(tmp_path):
    cfg_file = tiny_config(tmp_path, 'rle', max_epochs=1, batch_size=2, extra=BOUNDED)
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    (work_dir / 'last.pth').write_bytes(b'an earlier run')
    before = file_states(tmp_path)
    line, _ = failed_run(torchrun(cfg_file, str(work_dir)))
    assert 'already holds last.pth' in line and '--resume' in line and '--overwrite' in line, line
    assert file_states(tmp_path) == before


@needs_data
@pytest.mark.slow
def test_a_config_typo_is_printed_once_and_named_by_torchrun(tmp_path):
    """Found when the model is built, after the ranks joined: each raises it, the first process prints it."""
    cfg_file = tiny_config(tmp_path, 'rle', max_epochs=1, batch_size=2,
                           extra=BOUNDED + "model = dict(head=dict(type='RLEHeed'))\n")
    line, _ = failed_run(torchrun(cfg_file, str(tmp_path / 'work')))
    assert "'RLEHeed' is not registered" in line and 'RLEHead' in line and 'model.head' in line, line


@pytest.mark.slow
def test_a_mistyped_flag_is_printed_once_and_named_by_torchrun(tmp_path):
    line, _ = failed_run(torchrun(SAMPLE_CONFIG, str(tmp_path / 'work'), '--devcie', 'cpu'))
    assert line == 'error: unrecognized arguments: --devcie cpu (see train.py --help)', line


@needs_data
@pytest.mark.slow
def test_two_nodes_train_together_and_only_rank_0_writes(tmp_path):
    """Two torchrun launches as two machines of one process each (static rendezvous at rank 0's
    address); each runs in its own folder with the same relative --work-dir."""
    cfg_file = tiny_config(tmp_path, 'rle', max_epochs=1, batch_size=2, extra=BOUNDED)
    endpoint = f'127.0.0.1:{free_port()}'
    nodes = [tmp_path / f'node{rank}' for rank in (0, 1)]
    procs = []
    for rank, node in enumerate(nodes):
        node.mkdir()
        procs.append(torchrun(cfg_file, 'work', cwd=node, launcher=(
            '--nnodes', '2', '--nproc_per_node', '1', '--node_rank', str(rank), '--rdzv_endpoint', endpoint)))
    outputs = finish(procs)
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    log = (nodes[0] / 'work' / 'train.log').read_text()
    assert 'World size: 2' in log and 'batch 2 x 2 processes' in log
    assert 'Epoch(train) [1][3/3]' in log  # 12 instances shared by the two ranks, 2 per batch
    assert (nodes[0] / 'work' / 'last.pth').is_file()
    assert list(nodes[1].iterdir()) == []  # rank 1 wrote nothing


def test_a_rank_that_cannot_join_says_where_and_how_long_it_waited(monkeypatch):
    monkeypatch.setenv('RANK', '1')
    monkeypatch.setenv('LOCAL_RANK', '1')
    monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(free_port()))  # nobody listens: rank 0 never started
    expected = (r'rank 1 of 2 could not join the process group at 127\.0\.0\.1:\d+ within 1 s '
                r'\(env_cfg\.dist_timeout\): are all 2 processes started')
    with pytest.raises(ReportedError, match=expected):
        init_distributed('cpu', timeout=1)
    assert not utils.dist.is_distributed()
