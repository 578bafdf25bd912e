"""The command lines themselves: every script's devices, numbers, paths and output flags are checked by the
shared argument types (``utils.cli``) before any work, as one ``error: argument --flag: ...`` line with exit
status 2 naming the value; valid values parse; the old output spellings still work; and the thread rule
(``utils.threads``). Parse-level: nothing here loads a model or data."""
from __future__ import annotations

import importlib
import os
import re
import sys
import unittest.mock
import warnings

import cv2
import pytest
import torch

from tests.conftest import SAMPLE_CONFIG, one_error_line, run_entry_point
from utils import cli, threads

CFG = str(SAMPLE_CONFIG)
DEMO = ['none', 'none', CFG, 'ckpt.pth', '--input', 'demos/000000000785.jpg', '--out-dir', 'out']


class _Parsed(Exception):
    """Carries the namespace a script's parser produced, stopping the script there."""


def parsed(module_name: str, argv: list, monkeypatch) -> object:
    """The namespace ``module.main(argv)`` parses (nothing after parsing runs)."""
    module = importlib.import_module(module_name)

    class Stop(cli.ArgumentParser):
        def parse_args(self, args=None, namespace=None):
            raise _Parsed(super().parse_args(args, namespace))

    monkeypatch.setattr(cli, 'ArgumentParser', Stop)  # every script builds its parser as cli.ArgumentParser
    with pytest.raises(_Parsed) as info:
        module.main([str(a) for a in argv])
    return info.value.args[0]


def refused(module_name: str, argv: list, capsys, *needles: str) -> str:
    """The one error line of ``module.main(argv)`` through run_main (exit status 2, no traceback)."""
    main = importlib.import_module(module_name).main
    return one_error_line(*run_entry_point(main, argv, capsys), *needles)


# ------------------------------------------------------------------------------------------ devices
@pytest.fixture
def no_cuda_build(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.version, 'cuda', None)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)


DEVICE_SCRIPTS = {  # script -> its arguments besides --device
    'train': [CFG],
    'val': [CFG, 'ckpt.pth'],
    'topdown_demo_with_mmdet': DEMO,
    'benchmarks.bench_train': [CFG],
}


@pytest.mark.parametrize('module_name', DEVICE_SCRIPTS)
def test_unknown_device_lists_the_valid_forms(module_name, capsys):
    refused(module_name, [*DEVICE_SCRIPTS[module_name], '--device', 'gpu'], capsys,
            r"argument --device: 'gpu' is not a device; expected cpu, cuda, cuda:N")


@pytest.mark.parametrize('module_name', DEVICE_SCRIPTS)
def test_cuda_without_a_cuda_build_says_so_and_how_to_use_the_cpu(module_name, capsys, no_cuda_build):
    refused(module_name, [*DEVICE_SCRIPTS[module_name], '--device', 'cuda'], capsys,
            r"'cuda': CUDA is not available: this torch \(.*\) was built without CUDA; use --device cpu")


def test_cuda_build_without_a_gpu_names_what_was_found(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.version, 'cuda', '12.8')
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
    refused('train', [CFG, '--device', 'cuda:0'], capsys,
            r"CUDA 12\.8\) finds no GPU: no GPU visible with CUDA_VISIBLE_DEVICES=''; use --device cpu")
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES')
    monkeypatch.setattr(os.path, 'exists', lambda path: path != '/proc/driver/nvidia/version')
    if sys.platform.startswith('linux'):
        refused('val', [CFG, 'c.pth', '--device', 'cuda'], capsys, 'finds no GPU: no NVIDIA driver is loaded')


def test_a_gpu_index_past_the_visible_ones(capsys, two_gpus):
    refused('topdown_demo_with_mmdet', [*DEMO, '--device', 'cuda:2'], capsys,
            r"'cuda:2': only 2 GPUs are visible \(cuda:0 to cuda:1\); choose one of them, or --device cpu")


def test_valid_devices_parse(monkeypatch, two_gpus):
    assert parsed('train', [CFG, '--device', 'cpu'], monkeypatch).device == 'cpu'
    assert parsed('val', [CFG, 'c.pth', '--device', 'CUDA:1'], monkeypatch).device == 'cuda:1'
    assert parsed('benchmarks.bench_train', [CFG, '--device', 'cuda'], monkeypatch).device == 'cuda'
    assert parsed('train', [CFG], monkeypatch).device is None  # train.py picks cuda when available


# ------------------------------------------------------------------------------------------ numbers
NUMBER_CASES = [
    ('train', [CFG, '--seed', '-1'], r'argument --seed: -1 is out of range; expected a whole number from 0 '
                                     r'to 4294967295'),
    ('train', [CFG, '--seed', str(2**32)], r'--seed: 4294967296 is out of range'),
    ('train', [CFG, '--seed', '1.5'], r"--seed: '1\.5' is not a whole number"),
    ('val', [CFG, 'c.pth', '--num-workers', '-2'], r'--num-workers: -2 is out of range; expected a whole '
                                                   r'number >= 0'),
    ('val', [CFG, 'c.pth', '--batch-size', '0'], r'--batch-size: 0 is out of range; expected a whole number '
                                                 r'>= 1'),
    ('topdown_demo_with_mmdet', [*DEMO, '--bbox-thr', '1.5'], r'--bbox-thr: 1\.5 is out of range; expected a '
                                                             r'number from 0 to 1'),
    ('topdown_demo_with_mmdet', [*DEMO, '--nms-thr', '-0.1'], r'--nms-thr: -0\.1 is out of range'),
    ('topdown_demo_with_mmdet', [*DEMO, '--kpt-thr', 'nan'], r"--kpt-thr: 'nan' is not a finite number"),
    ('topdown_demo_with_mmdet', [*DEMO, '--det-cat-id', '-1'], r'--det-cat-id: -1 is out of range'),
    ('topdown_demo_with_mmdet', [*DEMO, '--det-interval', '0'], r'--det-interval: 0 is out of range'),
    ('topdown_demo_with_mmdet', [*DEMO, '--thickness', '0'], r'--thickness: 0 is out of range'),
    ('tools.eval_predictions', ['--ann-file', CFG, '--predictions', CFG, '--nms-thr', '2'],
     r'--nms-thr: 2 is out of range; expected a number from 0 to 1'),
    ('tools.eval_predictions', ['--ann-file', CFG, '--predictions', CFG, '--keypoint-score-thr', 'x'],
     r"--keypoint-score-thr: 'x' is not a number"),
    ('tools.browse_dataset', [CFG, '--out-dir', 'vis', '--n', '0'], r'--n: 0 is out of range'),
    ('tools.export_onnx', [CFG, 'c.pth', '--out', 'm.onnx', '--atol', '-1'], r'--atol: -1 is out of range'),
    ('tools.export_onnx', [CFG, 'c.pth', '--out', 'm.onnx', '--check-batch', '0'], r'--check-batch: 0'),
    ('tools.quantize', [CFG, 'c.pth', '--calib-data', 'a.json', '--out', 'q.onnx', '--batch-size', '-3'],
     r'--batch-size: -3 is out of range'),
    ('benchmarks.bench_inference', [CFG, '--iters', '0'], r'--iters: 0 is out of range'),
    ('benchmarks.bench_inference', [CFG, '--batch', '1', '0'], r'--batch: 0 is out of range'),
    ('benchmarks.bench_onnx', [CFG, 'c.pth', '--repeats', '0'], r'--repeats: 0 is out of range'),
    ('benchmarks.bench_train', [CFG, '--warmup', '-1'], r'--warmup: -1 is out of range'),
    ('benchmarks.bench_pipeline', [CFG, '--workers', '2', '-1'], r'--workers: -1 is out of range'),
    ('benchmarks.synthetic_jpeg', ['out', '--images', '0'], r'--images: 0 is out of range'),
]


@pytest.mark.parametrize('module_name, argv, needle', NUMBER_CASES,
                         ids=[f'{i}-{c[0].split(".")[-1]}' for i, c in enumerate(NUMBER_CASES)])
def test_numbers_out_of_range(module_name, argv, needle, capsys):
    refused(module_name, argv, capsys, needle)


THREAD_SCRIPTS = {
    'train': [CFG], 'val': [CFG, 'c.pth'], 'topdown_demo_with_mmdet': DEMO,
    'tools.export_onnx': [CFG, 'c.pth', '--out', 'm.onnx'],
    'tools.quantize': [CFG, 'c.pth', '--calib-data', 'a.json', '--out', 'q.onnx'],
    'tools.model_info': [CFG], 'benchmarks.bench_inference': [CFG],
    'benchmarks.bench_onnx': [CFG, 'c.pth'], 'benchmarks.bench_train': [CFG],
}


@pytest.mark.parametrize('module_name', THREAD_SCRIPTS)
def test_every_script_that_runs_a_model_takes_threads(module_name, capsys, monkeypatch):
    argv = THREAD_SCRIPTS[module_name]
    assert parsed(module_name, [*argv, '--threads', '3'], monkeypatch).threads == 3
    assert parsed(module_name, argv, monkeypatch).threads is None  # the rule decides
    refused(module_name, [*argv, '--threads', '0'], capsys, r'--threads: 0 is out of range; expected a whole '
                                                            r'number >= 1')


def test_valid_numbers_parse(monkeypatch):
    args = parsed('train', [CFG, '--seed', str(2**32 - 1)], monkeypatch)
    assert args.seed == 2**32 - 1
    args = parsed('topdown_demo_with_mmdet', [*DEMO, '--bbox-thr', '0', '--kpt-thr', '1', '--nms-thr', '0.5',
                                              '--radius', '0', '--det-cat-id', '3'], monkeypatch)
    assert (args.bbox_thr, args.kpt_thr, args.nms_thr, args.radius, args.det_cat_id) == (0.0, 1.0, 0.5, 0, 3)
    args = parsed('val', [CFG, 'c.pth', '--num-workers', '0', '--batch-size', '1'], monkeypatch)
    assert (args.num_workers, args.batch_size) == (0, 1)


# ------------------------------------------------------------------------------------------ paths
def test_a_folder_where_a_file_is_expected(tmp_path, capsys, restore_threads):
    folder = tmp_path / 'rle'
    folder.mkdir()
    (tmp_path / 'c.pth').write_bytes(b'')
    for module_name, argv in (('train', [folder, '--device', 'cpu']), ('tools.model_info', [folder]),
                              ('val', [folder, tmp_path / 'c.pth', '--device', 'cpu'])):
        refused(module_name, argv, capsys, rf'config {re.escape(str(folder))} is a folder; expected a \.py '
                                           'config file')
    refused('val', [CFG, folder, '--device', 'cpu'], capsys,
            rf'{re.escape(str(folder))} is a folder that holds neither best\.pth nor last\.pth; expected a '
            "checkpoint file or a training run's work dir")
    refused('tools.eval_predictions', ['--ann-file', folder, '--predictions', CFG], capsys,
            rf'argument --ann-file: {re.escape(str(folder))} is a folder; expected a COCO keypoint')
    for module_name, argv in (('val', [CFG, 'c.pth', '--out', folder]),
                              ('val', [CFG, 'c.pth', '--dump', folder]),
                              ('tools.export_onnx', [CFG, 'c.pth', '--out', folder]),
                              ('tools.plot_curves', [folder, '--out', folder]),
                              ('tools.convert_checkpoint', ['c.pth', folder, '--to', 'ours'])):
        refused(module_name, argv, capsys, rf'{re.escape(str(folder))} is a folder; expected a .* file name '
                                           'to write')
    assert list(folder.iterdir()) == []


def test_a_file_where_a_folder_is_expected(tmp_path, capsys):
    file = tmp_path / 'taken.txt'
    file.write_text('keep me')
    for module_name, argv in (('topdown_demo_with_mmdet', [*DEMO[:-1], file]),
                              ('tools.browse_dataset', [CFG, '--out-dir', file]),
                              ('val', [CFG, 'c.pth', '--show-dir', file]),
                              ('train', [CFG, '--work-dir', file]),
                              ('benchmarks.synthetic_jpeg', [file])):
        refused(module_name, argv, capsys, rf'{re.escape(str(file))} is a file; expected a folder')
    assert file.read_text() == 'keep me'


OUTPUT_EXTENSION_CASES = [
    ('val', [CFG, 'c.pth', '--out', 'metrics.txt'],
     r"argument --out/--out-metrics: metrics\.txt: unsupported extension '\.txt'; expected \.json"),
    ('val', [CFG, 'c.pth', '--dump', 'preds.pkl'], r"--dump: preds\.pkl: unsupported extension '\.pkl'"),
    ('tools.export_onnx', [CFG, 'c.pth', '--out', 'model.pth'], r"--out/--output: model\.pth: unsupported "
                                                                r"extension '\.pth'; expected \.onnx"),
    ('tools.quantize', [CFG, 'c.pth', '--calib-data', 'a.json', '--out', 'q'],
     r"unsupported extension '\(none\)'; expected \.onnx"),
    ('tools.quantize', [CFG, 'c.pth', '--calib-data', 'a.json', '--out', 'q.onnx', '--float-out', 'f.pb'],
     r"--float-out/--float-output: f\.pb: unsupported extension"),
    ('tools.convert_checkpoint', ['c.pth', 'out.onnx', '--to', 'ours'], r"out\.onnx: unsupported extension "
                                                                        r"'\.onnx'; expected \.pth, \.pt"),
    ('tools.eval_predictions', ['--ann-file', CFG, '--predictions', CFG, '--out', 'r.csv'], r"r\.csv"),
    ('tools.plot_curves', ['run', '--out', 'c.bmp'], r"unsupported extension '\.bmp'; expected \.png, \.pdf"),
]


@pytest.mark.parametrize('module_name, argv, needle', OUTPUT_EXTENSION_CASES,
                         ids=[f'{i}-{c[0].split(".")[-1]}' for i, c in enumerate(OUTPUT_EXTENSION_CASES)])
def test_outputs_refuse_an_unsupported_extension(module_name, argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'c.pth').write_bytes(b'')
    refused(module_name, argv, capsys, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['c.pth']


# ------------------------------------------------------------------------------------------ output flags
ALIAS_CASES = [  # (script, arguments with the old spelling, namespace attribute, expected value)
    ('topdown_demo_with_mmdet', [*DEMO[:-2], '--output-root', 'vis_results'], 'out_dir', 'vis_results'),
    ('tools.browse_dataset', [CFG, '--output-dir', 'vis_data'], 'out_dir', 'vis_data'),
    ('tools.export_onnx', [CFG, 'c.pth', '--output', 'm.onnx'], 'out', 'm.onnx'),
    ('tools.quantize', [CFG, 'c.pth', '--calib-data', 'a.json', '--output', 'q.onnx'], 'out', 'q.onnx'),
    ('tools.quantize', [CFG, 'c.pth', '--calib-data', 'a.json', '--out', 'q.onnx', '--float-output',
                        'f.onnx'], 'float_out', 'f.onnx'),
    ('val', [CFG, 'c.pth', '--out-metrics', 'm.json'], 'out', 'm.json'),
    ('val', [CFG, 'c.pth', '--show-dir', 'pics'], 'show_dir', 'pics'),
    ('val', [CFG, 'c.pth', '--out-dir', 'pics'], 'show_dir', 'pics'),
    ('tools.eval_predictions', ['--ann-file', CFG, '--predictions', CFG, '--outfile-prefix', 'res'], 'out',
     'res.keypoints.json'),
    ('tools.convert_checkpoint', ['c.pth', 'dst.pth', '--to', 'ours'], 'out', 'dst.pth'),
    ('tools.convert_checkpoint', ['c.pth', '--out', 'dst.pth', '--to', 'ours'], 'out', 'dst.pth'),
    ('tools.publish_model', ['c.pth', 'pub.pth'], 'out', 'pub.pth'),
    ('tools.publish_model', ['c.pth', '--out', 'pub.pth'], 'out', 'pub.pth'),
    ('benchmarks.synthetic_jpeg', ['jpegs'], 'out_dir', 'jpegs'),
    ('benchmarks.synthetic_jpeg', ['--out-dir', 'jpegs'], 'out_dir', 'jpegs'),
]


@pytest.mark.parametrize('module_name, argv, attr, value', ALIAS_CASES,
                         ids=[f'{i}-{c[0].split(".")[-1]}' for i, c in enumerate(ALIAS_CASES)])
def test_old_output_spellings_still_work(module_name, argv, attr, value, monkeypatch):
    assert getattr(parsed(module_name, argv, monkeypatch), attr) == value


def test_out_flags_follow_one_convention(capsys):
    """--help of every script that writes names --out for a file and --out-dir for a folder."""
    writers = {'val': '--out ', 'topdown_demo_with_mmdet': '--out-dir', 'tools.browse_dataset': '--out-dir',
               'tools.export_onnx': '--out ', 'tools.quantize': '--out ', 'tools.eval_predictions': '--out ',
               'tools.convert_checkpoint': '--out ', 'tools.publish_model': '--out ',
               'tools.plot_curves': '--out ', 'benchmarks.synthetic_jpeg': '--out-dir'}
    for module_name, flag in writers.items():
        module = importlib.import_module(module_name)
        with pytest.raises(SystemExit):
            (getattr(module, 'parse_args', None) or module.main)(['--help'])
        assert flag in capsys.readouterr().out, module_name


def test_usage_mistakes_are_one_line_too(capsys):
    refused('train', [], capsys, r'one of the arguments CONFIG --cfg_file/--cfg-file is required',
            r'see .* --help')
    refused('val', [CFG, 'c.pth', '--no-such-flag'], capsys, r'unrecognized arguments: --no-such-flag')
    refused('tools.convert_checkpoint', ['c.pth', '--to', 'ours'], capsys, r'one of the arguments DST --out '
                                                                           r'is required')


# ------------------------------------------------------------------------------------------ threads
@pytest.fixture
def restore_threads():
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(torch_threads)
    cv2.setNumThreads(cv2_threads)


@pytest.mark.parametrize('cores, busy, expected', [(2, 6.0, 1), (2, 0.1, 2), (16, 0.3, 16), (16, 4.6, 11),
                                                   (16, 40.0, 1)])
def test_default_threads_are_the_free_cores(cores, busy, expected, monkeypatch):
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    monkeypatch.setattr(threads, 'usable_cores', lambda: cores)
    monkeypatch.setattr(threads, 'busy_cores', lambda: busy)
    setting = threads.default_threads()
    assert setting.count == expected
    assert f'{cores} usable, load {busy:.1f}' in str(setting)


def test_omp_num_threads_and_the_flag_win(monkeypatch, restore_threads):
    monkeypatch.setenv(threads.THREADS_ENV, '3')
    monkeypatch.setattr(threads, 'busy_cores', lambda: 100.0)
    assert str(threads.set_threads()) == '3 CPU threads (OMP_NUM_THREADS=3)'
    assert torch.get_num_threads() == 3
    setting = threads.set_threads(1)
    assert str(setting) == '1 CPU thread (--threads)'
    assert torch.get_num_threads() == 1 and cv2.getNumThreads() <= 1
    monkeypatch.setenv(threads.THREADS_ENV, 'lots')  # not a number: the free cores decide
    assert threads.default_threads().count == 1


def test_the_load_is_read_from_this_machine():
    assert threads.usable_cores() >= 1
    assert threads.busy_cores() >= 0.0


def test_onnx_runtime_sessions_follow_the_thread_setting(tmp_path, restore_threads):
    pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    from deploy.ort_backend import create_session

    seen = {}
    real = ort.InferenceSession

    def spy(path, sess_options=None, providers=None):
        seen['threads'] = sess_options.intra_op_num_threads
        return real(path, sess_options=sess_options, providers=providers)

    model = torch.nn.Linear(2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)  # the TorchScript exporter's notice
        torch.onnx.export(model, (torch.zeros(1, 2),), str(tmp_path / 'm.onnx'), dynamo=False)
    threads.set_threads(1)
    with unittest.mock.patch.object(ort, 'InferenceSession', spy):
        create_session(tmp_path / 'm.onnx')
    assert seen['threads'] == 1
