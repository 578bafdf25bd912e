"""benchmarks/gpu_check.py without a GPU: its rows, deadline and outputs with a stand-in for the commands,
its real preflight row as ``--dry-run`` runs it, the commands it builds accepted by their scripts, the
stage profile it reads (bench_pipeline.py --json); and tools/prepare_gpu_bundle.py on a local wheel
folder. (The whole ``--dry-run`` takes minutes on the CPU and is not part of the suite: see the README.)"""
from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check
from benchmarks.gpu_check_rows import (
    Check,
    Settings,
    dry_run_commands,
    judge_pytest,
    judge_stages,
    judge_train,
    plan,
)
from tests.conftest import (
    REPO,
    SHARED,
    needs_coco,
    needs_data,
    needs_weights,
    one_error_line,
    run_entry_point,
)

PREFLIGHT_OK = json.dumps({'host': {'python': '3.12.3', 'usable_cpus': 16, 'shm_free_gib': 60.0},
                           'packages': {'torch': '2.11.0+cu130', 'torchvision': '0.26.0'},
                           'cuda': {'available': True, 'name': 'H100', 'memory_gib': 79.2,
                                    'compute_capability': '9.0', 'torch_cuda': '13.0'},
                           'shared': {'missing': []}, 'problems': []})


class FakeJpegs:
    folder = Path('/tmp/jpegs')

    @staticmethod
    def wait(timeout: float) -> None:
        return None


def settings(tmp_path: Path, mode: str = 'full', shared: Path = SHARED) -> Settings:
    return Settings(mode, shared, tmp_path / 'work', FakeJpegs())


def fake_output(check: Check) -> tuple[int, str]:
    """What each kind of row prints when it passes."""
    if check.id == 'preflight':
        return 0, PREFLIGHT_OK
    if check.id in ('cuda-tests', 'no-sync'):
        return 0, 'tests/test_cuda.py ....\n8 passed, 3 deselected in 20.1s'
    if check.id == 'stages':
        stage_ms = dict(decode=9.0, upload=0.1, geometry=0.2, canvas=1.0, warp=2.0, photometric=3.0,
                        targets=0.1, total=14.0)
        return 0, json.dumps({'batched': dict(device='cuda', batch=256, stage_ms=stage_ms, aten_ops=600,
                                              decode_images_per_s=28000.0, aten_ops_per_added_sample=1.2)})
    return 0, json.dumps({'images_per_s': 9000.0, 'batch': 256, 'data_wait_share': 0.05,
                          'peak_memory_mb': 3000, 'input_pipeline': None})


def run_fake(tmp_path, monkeypatch, checks, limit=360.0, step=5.0, shared=SHARED):
    """run_rows with a stand-in runner whose commands take ``step`` seconds of a fake clock; returns (rows,
    calls: (row id, its timeout, the statuses in the JSON when it started), the outputs)."""
    now = [1000.0]
    monkeypatch.setattr(gpu_check.time, 'monotonic', lambda: now[0])
    outputs = gpu_check.Outputs(tmp_path / 'out')
    outputs.begin()
    s = settings(tmp_path, shared=shared)
    by_command = {tuple(check.command(s)): check for check in checks}
    calls = []

    def runner(cmd, timeout, env):
        check = by_command[tuple(cmd)]
        calls.append((check.id, timeout, [r['status'] for r in json.loads(outputs.json.read_text())['rows']]))
        assert env['MMPOSE_CLEAN_SHARED'] == str(shared)
        now[0] += step
        return fake_output(check)

    header = {'mode': 'full', 'time_limit_s': limit, 'started': 'now', 'environment': {}}
    rows = gpu_check.run_rows(checks, s, outputs, header, now[0] + limit, runner=runner)
    return rows, calls, outputs


def no_train_rows(checks):  # the train rows read the checkpoint they wrote: not with a stand-in runner
    return [c for c in checks if c.id not in ('train', 'resume')]


def test_every_row_is_written_as_soon_as_it_finishes_and_listed_from_the_start(tmp_path, monkeypatch):
    checks = no_train_rows(plan())
    rows, calls, outputs = run_fake(tmp_path, monkeypatch, checks)
    assert [c[0] for c in calls] == [c.id for c in checks]
    for i, (_, _, statuses) in enumerate(calls):  # when row i starts, rows before it are final
        assert statuses[:i] == ['pass'] * i and statuses[i:] == ['pending'] * (len(checks) - i)
    saved = json.loads(outputs.json.read_text())
    assert [r['status'] for r in saved['rows']] == ['pass'] * len(checks)
    assert saved['environment']['cuda']['name'] == 'H100'
    assert 'H100, 79.2 GiB, compute 9.0' in saved['rows'][0]['summary']
    assert f'{len(checks)}/{len(checks)} passed' in outputs.txt.read_text()


def test_rows_past_the_deadline_are_listed_as_not_run_and_timeouts_fit_the_limit(tmp_path, monkeypatch):
    checks = no_train_rows(plan())
    rows, calls, _ = run_fake(tmp_path, monkeypatch, checks, limit=200.0, step=45.0)
    ran = [r for r in rows if r.status == 'pass']
    assert 3 <= len(ran) < len(rows) and all(r.status == 'NOT RUN' for r in rows[len(ran):])
    assert 'time limit' in rows[-1].summary
    elapsed = 0.0
    for _, timeout, _ in calls:  # each row's timeout ends before the deadline
        assert timeout <= 200.0 - elapsed + 1e-6
        elapsed += 45.0


def test_a_skipped_row_is_not_a_pass(tmp_path, monkeypatch):
    checks = [c for c in plan() if c.id in ('preflight', 'cuda-tests', 'bench-rle-loader')]
    rows, calls, _ = run_fake(tmp_path, monkeypatch, checks, shared=tmp_path / 'nowhere')
    assert [c[0] for c in calls] == ['preflight']
    assert [r.status for r in rows] == ['pass', 'SKIP', 'SKIP']
    assert 'no sample data' in rows[1].summary and '--shared' in rows[1].summary
    output = 'SKIPPED [1] tests/test_cuda.py:9: needs data\n7 passed, 1 skipped'
    status, summary, _ = judge_pytest(None, 0, output)
    assert status == 'SKIP' and 'a skipped test is not a pass: SKIPPED [1]' in summary


@pytest.mark.parametrize('rc, output, status', [
    (0, '12 passed, 4 deselected in 30.0s', 'pass'),
    (1, 'FAILED tests/test_cuda.py::test_x - boom\n1 failed, 11 passed in 30.0s', 'FAIL'),
    (0, '12/300 tests collected (288 deselected) in 3.1s', 'pass'),
    (5, 'no tests ran in 0.1s', 'FAIL'),
    (0, '3 passed, 1 skipped in 1.0s', 'SKIP'),
])
def test_pytest_rows_pass_only_when_tests_ran_and_none_failed_or_skipped(rc, output, status):
    assert judge_pytest(None, rc, output)[0] == status


def test_train_rows_read_the_run_they_wrote(tmp_path):
    s = settings(tmp_path)
    run = s.work / 'train_sample'
    run.mkdir(parents=True)
    torch.save({'epoch': 2, 'state_dict': {}}, run / 'last.pth')
    (run / 'train.log').write_text('Resumed from /x/last.pth: continuing at epoch 2\n')
    output = 'Epoch(val) [2]  coco/AP: 0.6588  coco/AP .5: 1.0000'
    assert judge_train(2)(s, 0, output) == ('pass', 'last.pth at epoch 2, resumed, coco/AP 0.6588',
                                            {'epoch': 2, 'resumed': True, 'coco_ap': 0.6588})
    assert judge_train(3)(s, 0, output)[0] == 'FAIL'  # stopped short of the epochs asked for
    (run / 'train.log').write_text('started afresh\n')
    assert judge_train(2)(s, 0, output)[0] == 'FAIL'  # epoch 2 without resuming is not a resume
    assert judge_train(1)(s, 1, 'error: data_root: no such folder')[:2] == \
        ('FAIL', 'exit status 1: error: data_root: no such folder')
    (run / 'last.pth').unlink()
    with pytest.raises(FileNotFoundError, match='train.py wrote no last.pth'):
        judge_train(1)(s, 0, output)


def test_a_command_that_runs_past_its_timeout_is_killed_and_fails_its_row(tmp_path, monkeypatch):
    check = plan()[0]
    check.command = lambda s: [sys.executable, '-c', 'import time; time.sleep(120)']
    check.cap_s = 0.5
    monkeypatch.setattr(gpu_check, 'MIN_START_S', 0.1)
    outputs = gpu_check.Outputs(tmp_path / 'out')
    outputs.begin()
    header = {'mode': 'full', 'time_limit_s': 360.0, 'started': 'now', 'environment': {}}
    rows = gpu_check.run_rows([check], settings(tmp_path), outputs, header, gpu_check.time.monotonic() + 60)
    assert rows[0].status == 'FAIL' and 'timed out after 0 s' in rows[0].summary
    assert '===== preflight' in outputs.log.read_text()


def test_the_budget_fits_six_minutes_and_quick_three():
    checks = plan()
    assert len({c.id for c in checks}) == len(checks)
    full = sum(c.estimate_s for c in checks)
    quick = sum(c.estimate_s for c in checks if c.quick)
    assert full <= 0.8 * gpu_check.TIME_LIMITS['full'] and quick <= 0.8 * gpu_check.TIME_LIMITS['quick']
    assert all(c.cap_s <= gpu_check.TIME_LIMITS['quick'] for c in checks)
    assert [c.id for c in checks if c.quick][:4] == ['preflight', 'cuda-tests', 'no-sync', 'train']
    assert {'bench-rle-synthetic-amp', 'bench-rle-jpeg-device', 'stages'} <= {c.id for c in checks if c.quick}


def test_only_selects_rows_and_names_the_rows_when_nothing_matches():
    assert [c.id for c in gpu_check.select(plan(), False, 'train,bench-rle-jpeg-*')] == \
        ['train', 'bench-rle-jpeg-device', 'bench-rle-jpeg-cpu']
    with pytest.raises(gpu_check.ArgumentError, match='bench-x matches no row; the rows are preflight'):
        gpu_check.select(plan(), False, 'bench-x')


class Parsed(Exception):
    pass


@pytest.mark.parametrize('mode', ['full', 'quick', 'dry-run'])
def test_every_command_is_accepted_by_its_script(tmp_path, monkeypatch, mode):
    """Each row's command line parses with the parser of the script it runs (a renamed option would
    otherwise surface only on the GPU machine)."""
    real = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):
        raise Parsed(real(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', parse_only)
    # the GPU machine's view: one CUDA device (the --device type checks what this machine has)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    checks = plan()
    if mode == 'dry-run':
        dry_run_commands(checks)
    for check in checks:
        cmd = check.command(settings(tmp_path, mode))
        assert cmd[0] == sys.executable
        if cmd[1] == '-m':
            assert cmd[2] == 'pytest' and all(not a.startswith('tests/') or (REPO / a).is_file() for a in cmd)
            continue
        module = importlib.import_module(cmd[1].removesuffix('.py').replace('/', '.'))
        with pytest.raises(Parsed):
            module.main(cmd[2:])


@needs_coco
def test_stage_profile_reports_every_stage(tmp_path, capsys):
    from benchmarks import bench_pipeline
    from benchmarks.synthetic_jpeg import write_synthetic_coco

    write_synthetic_coco(tmp_path, 2)
    argv = ['configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py', '--data-dir', str(tmp_path), '--ann-file',
            'ann.json', '--n', '2', '--repeats', '1', '--workers', '0', '--batch-size', '2', '--batched',
            '--device', 'cpu', '--json']
    assert bench_pipeline.main(argv) == 0
    status, summary, figures = judge_stages(None, 0, capsys.readouterr().out)
    assert status == 'pass' and figures['batched']['device'] == 'cpu'
    for stage in ('decode', 'canvas', 'warp', 'photometric', 'targets'):
        assert f'{stage} ' in summary and stage in figures['batched']['stage_ms']
    assert 'decode alone' in summary and figures['batched']['aten_ops'] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the no-CUDA path')
def test_without_cuda_it_says_so_in_one_line(tmp_path, capsys):
    status, err = run_entry_point(gpu_check.main, ['--out-dir', tmp_path / 'out'], capsys)
    one_error_line(status, err, r'^error: no CUDA device', '--dry-run')
    assert not (tmp_path / 'out').exists()


@needs_data
@needs_weights
@pytest.mark.slow
def test_dry_run_preflight_then_a_rerun_into_the_same_folder(tmp_path, capsys, monkeypatch):
    out = tmp_path / 'out'
    argv = ['--dry-run', '--only', 'preflight', '--shared', str(SHARED), '--out-dir', str(out)]
    assert gpu_check.main(argv) == 0  # the real preflight, on the CPU
    first = json.loads((out / 'gpu_check.json').read_text())
    assert first['rows'][0]['status'] == 'pass' and first['environment']['packages']['pycocotools']
    monkeypatch.setattr(gpu_check, 'run_command', lambda cmd, timeout, env: (0, PREFLIGHT_OK))
    assert gpu_check.main(argv) == 0  # rerun: the earlier results are kept beside the new ones
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob('*'))
    assert files == ['gpu_check.json', 'gpu_check.log', 'gpu_check.previous.json', 'gpu_check.txt']
    assert json.loads((out / 'gpu_check.previous.json').read_text())['started'] == first['started']
    assert '[pass] preflight' in capsys.readouterr().out


# ------------------------------------------------------------------ tools/prepare_gpu_bundle.py
def write_wheel(folder: Path, version: str = '2.0.99') -> Path:
    """A minimal CPython 3.12 manylinux x86_64 pycocotools wheel (pip reads its metadata)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f'pycocotools-{version}'
    path = folder / f'{name}-cp312-abi3-manylinux_2_17_x86_64.whl'
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('pycocotools/__init__.py', '')
        z.writestr(f'{name}.dist-info/METADATA',
                   f'Metadata-Version: 2.1\nName: pycocotools\nVersion: {version}\n')
        z.writestr(f'{name}.dist-info/WHEEL', 'Wheel-Version: 1.0\nRoot-Is-Purelib: false\n'
                                              'Tag: cp312-abi3-manylinux_2_17_x86_64\n')
        z.writestr(f'{name}.dist-info/RECORD', '')
    return path


def fake_shared(folder: Path) -> Path:
    for name, data in {'data/coco/test_coco.json': b'{}', 'data/coco/a.jpg': b'\xff\xd8',
                       'weights/w.pth': b'weights'}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.slow
def test_bundle_from_a_local_wheel_folder_then_rerun_refuse_and_force(tmp_path, capsys):
    from tools import prepare_gpu_bundle

    wheel = write_wheel(tmp_path / 'wheels')
    shared, out = fake_shared(tmp_path / 'shared'), tmp_path / 'bundle'
    argv = ['--find-links', str(wheel.parent), '--shared', str(shared), '--out-dir', str(out)]
    result = subprocess.run([sys.executable, 'tools/prepare_gpu_bundle.py', *argv], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f'{out}: written (4 files' in result.stdout and f'wheels/{wheel.name}' in result.stdout
    assert 'shared/weights/  1 files' in result.stdout and '--target /tmp/site' in result.stdout
    assert (out / 'wheels' / wheel.name).read_bytes() == wheel.read_bytes()
    assert (out / 'shared/data/coco/a.jpg').read_bytes() == b'\xff\xd8'
    manifest = json.loads((out / 'MANIFEST.json').read_text())
    assert manifest['python_version'] == '3.12' and set(manifest['files']) == {
        f'wheels/{wheel.name}', 'shared/data/coco/test_coco.json', 'shared/data/coco/a.jpg',
        'shared/weights/w.pth'}

    assert prepare_gpu_bundle.main(argv) == 0  # the same content: left as it is
    assert 'unchanged' in capsys.readouterr().out
    (shared / 'weights/w.pth').write_bytes(b'other weights')
    status, err = run_entry_point(prepare_gpu_bundle.main, argv, capsys)
    one_error_line(status, err, 'already holds a different bundle', 'shared/weights/w.pth', '--force')
    assert (out / 'shared/weights/w.pth').read_bytes() == b'weights'
    assert prepare_gpu_bundle.main([*argv, '--force']) == 0
    assert (out / 'shared/weights/w.pth').read_bytes() == b'other weights'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bundle', 'shared', 'wheels']  # no temporary left


def test_bundle_refuses_missing_data_a_foreign_folder_and_a_missing_wheel(tmp_path, capsys):
    from tools import prepare_gpu_bundle

    status, err = run_entry_point(prepare_gpu_bundle.main, ['--no-download', '--shared', tmp_path / 'none',
                                                            '--out-dir', tmp_path / 'b'], capsys)
    one_error_line(status, err, 'has no data/, weights/', '--shared', expected=1)
    foreign = tmp_path / 'foreign'
    (foreign / 'keep.txt').parent.mkdir()
    (foreign / 'keep.txt').write_text('mine')
    argv = ['--no-download', '--shared', fake_shared(tmp_path / 'shared'), '--out-dir', foreign, '--force']
    status, err = run_entry_point(prepare_gpu_bundle.main, argv, capsys)
    one_error_line(status, err, 'not a folder this tool wrote')
    assert (foreign / 'keep.txt').read_text() == 'mine'
    (tmp_path / 'empty').mkdir()
    status, err = run_entry_point(prepare_gpu_bundle.main, ['--find-links', tmp_path / 'empty', '--shared',
                                                            tmp_path / 'shared', '--out-dir', tmp_path / 'c'],
                                  capsys)
    one_error_line(status, err, 'pip could not get pycocotools', 'CPython 3.12', expected=1)
    assert not (tmp_path / 'c').exists()


def test_bundle_offline_says_how_to_do_without_pypi_and_without_a_wheel(tmp_path, capsys, monkeypatch):
    """No network: pip's failure names the two ways round it; a bundle made with --no-download prints the
    GPU machine's command without the pip line for a wheel it does not have."""
    from tools import prepare_gpu_bundle

    shared = fake_shared(tmp_path / 'shared')
    offline = subprocess.CompletedProcess([], 1, '', 'ERROR: No matching distribution found for pycocotools')
    monkeypatch.setattr(prepare_gpu_bundle.subprocess, 'run', lambda *a, **k: offline)
    status, err = run_entry_point(prepare_gpu_bundle.main, ['--shared', shared, '--out-dir', tmp_path / 'a'],
                                  capsys)
    one_error_line(status, err, 'from PyPI', '--find-links DIR', '--no-download', expected=1)
    assert prepare_gpu_bundle.main(['--no-download', '--shared', str(shared), '--out-dir',
                                    str(tmp_path / 'b')]) == 0
    out = capsys.readouterr().out
    assert 'pip install' not in out and 'PYTHONPATH' not in out
    assert f'  python3 benchmarks/gpu_check.py --shared {tmp_path / "b"}/shared --out-dir OUT_DIR' in out
