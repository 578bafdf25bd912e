"""Every script runs in the suite in its smallest real form, so that none can rot unseen: train.py, val.py,
the demo and each script in tools/ and benchmarks/ (a ``.py`` file there with an ``if __name__ ==
'__main__':`` block).

A script runs either here, as its command line (``python SCRIPT ARGS`` from the repository root, in this
process: the script's own file runs as ``__main__``, its ``sys.path`` line and ``run_main(main)``
included) on tiny sizes and the sample data, or, where a test elsewhere already runs it end to end, in
that test: :data:`ELSEWHERE` names it and the call that runs the script, and both are checked to be
there. A new script without a case here or there fails :func:`test_every_script_has_a_case`.
"""
from __future__ import annotations

import ast
import json
import runpy
import sys

import cv2
import pytest

from tests.conftest import COCO_ANN, REPO, RLE_WEIGHTS, SHARED, needs_coco, needs_data, needs_weights

RECIPE = 'configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py'  # RLE-0.5x: the README's first model
NO_PRETRAINED = ['--cfg-options', 'model.backbone.init_cfg=None']  # random weights: nothing downloaded
FOLDERS = ('.', 'tools', 'benchmarks')
NOT_SCRIPTS = {  # modules beside the scripts that have no command line of their own
    'tools/__init__.py': 'the package marker',
    'benchmarks/gpu_check_rows.py': "gpu_check.py's rows (tests/test_gpu_check.py)",
}

# script -> (the test in tests/ that runs it, the call in that test function that runs it)
ELSEWHERE = {
    'train.py': ('test_train.py::test_family_trains_validates_and_writes_outputs', 'train.main(args)'),
    'val.py': ('test_val.py::test_val_ground_truth_boxes', 'val.main([CONFIG, str(RLE_WEIGHTS)'),
    'topdown_demo_with_mmdet.py': ('test_demo.py::test_image_with_detector', '_run(det_ckpt, src, tmp_path'),
    'tools/browse_dataset.py': ('test_data_browse.py::test_browse_dataset_writes_crops',
                                "'tools/browse_dataset.py'"),
    'tools/convert_checkpoint.py': ('test_checkpoint.py::test_convert_tool_round_trip', 'convert_main(['),
    'tools/eval_predictions.py': ('test_coco_metric.py::test_eval_predictions_cli',
                                  "'tools/eval_predictions.py'"),
    'tools/export_onnx.py': ('test_export_onnx.py::test_export_tool_real_rle_weights',
                             'from tools.export_onnx import main'),
    'tools/model_info.py': (
        'test_model_info.py::test_cli_prints_one_json_line_and_macs_match_torch_flop_counter',
        "'tools/model_info.py'"),
    'tools/plot_curves.py': ('test_run_outputs.py::test_resume_appends', 'plot_curves.main(['),
    'tools/prepare_gpu_bundle.py': (
        'test_gpu_check.py::test_bundle_from_a_local_wheel_folder_then_rerun_refuse_and_force',
        "'tools/prepare_gpu_bundle.py'"),
    'tools/publish_model.py': ('test_publish_model.py::test_publish_strips_training_state_and_names_the_hash',
                               'published = main(['),
    'tools/quantize.py': ('test_quantize.py::test_quantize_tool_real_rle_within_deviation',
                          'from tools.quantize import main'),
    'benchmarks/bench_pipeline.py': ('test_gpu_check.py::test_stage_profile_reports_every_stage',
                                     'bench_pipeline.main(argv)'),
    'benchmarks/gpu_check.py': ('test_gpu_check.py::test_dry_run_preflight_then_a_rerun_into_the_same_folder',
                                'gpu_check.main(argv)'),  # --dry-run --only preflight
}


def scripts() -> set[str]:
    """The repository's scripts: ``.py`` files of :data:`FOLDERS` with a ``__main__`` block."""
    files = [p for folder in FOLDERS for p in sorted((REPO / folder).glob('*.py'))]
    return {p.relative_to(REPO).as_posix() for p in files if "if __name__ == '__main__':" in p.read_text()}


def run_script(script: str, argv: list, monkeypatch) -> int:
    """``python SCRIPT ARGV`` from the repository root, in this process; returns its exit status."""
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, 'argv', [script, *map(str, argv)])
    monkeypatch.setattr(sys, 'path', list(sys.path))  # the script puts the repository root first
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / script), run_name='__main__')
    return exit_info.value.code


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{')]


# ------------------------------------------------------------------------------------ every script, once
def test_every_script_has_a_case():
    found = scripts()
    cases = set(RUN_HERE) | set(ELSEWHERE)
    assert not found - cases, f'scripts without a case in tests/test_entry_points.py: {sorted(found - cases)}'
    assert not cases - found, f'cases for scripts that do not exist (any more): {sorted(cases - found)}'
    assert not set(RUN_HERE) & set(ELSEWHERE)
    others = {p.relative_to(REPO).as_posix() for folder in FOLDERS[1:] for p in (REPO / folder).glob('*.py')}
    assert others - found == set(NOT_SCRIPTS), f'modules of tools/ and benchmarks/ that are not scripts: ' \
                                               f'{sorted(others - found)}; NOT_SCRIPTS: {sorted(NOT_SCRIPTS)}'


@pytest.mark.parametrize('script', sorted(ELSEWHERE))
def test_the_test_named_for_a_script_runs_it(script):
    test, call = ELSEWHERE[script]
    module, name = test.split('::')
    source = (REPO / 'tests' / module).read_text()
    functions = {node.name: node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}
    assert name in functions, f'{script}: tests/{module} has no {name} any more'
    assert call in ast.get_source_segment(source, functions[name]), \
        f'{script}: tests/{module}::{name} no longer runs it ({call!r})'


# ------------------------------------------------------------------------------------- the scripts run here
@needs_weights
@pytest.mark.slow
def bench_inference(tmp_path, monkeypatch, capsys):
    argv = [RECIPE, RLE_WEIGHTS, '--batch', '2', '--iters', '2', '--warmup', '0']  # every mode
    assert run_script('benchmarks/bench_inference.py', argv, monkeypatch) == 0
    rows = json_lines(capsys.readouterr().out)
    assert [row['mode'] for row in rows] == ['eager', 'channels_last', 'fused', 'jit']
    assert all(row['batch'] == 2 and row['threads'] == 1 and row['median_ms'] > 0 for row in rows)
    assert all(row['p90_ms'] >= row['median_ms'] for row in rows)  # of 2 runs: the slower one


@needs_coco
@needs_weights
@pytest.mark.slow
def bench_onnx(tmp_path, monkeypatch, capsys):
    pytest.importorskip('onnxruntime')
    argv = [RECIPE, RLE_WEIGHTS, '--batch', '1', '--repeats', '1', '--iters', '1', '--calib-data', COCO_ANN,
            '--e2e-data', COCO_ANN]
    assert run_script('benchmarks/bench_onnx.py', argv, monkeypatch) == 0
    rows = json_lines(capsys.readouterr().out)
    backends = ['pytorch_eager', 'ort_fp32', 'ort_int8']
    assert [row['backend'] for row in rows if 'batch' in row] == backends
    end_to_end = [row for row in rows if 'e2e_images' in row]
    assert [row['backend'] for row in end_to_end] == backends
    assert all(row['e2e_images'] == 4 and row['people'] == 14 and row['images_per_s'] > 0
               for row in end_to_end)


def bench_train(tmp_path, monkeypatch, capsys):
    """Four synthetic JPEGs through the recipe's batched (device) pipeline on the CPU, one timed step."""
    argv = [RECIPE, '--synthetic-jpeg', '4', '--jpeg-dir', tmp_path / 'jpegs', '--input-pipeline', 'device',
            '--iters', '1', '--warmup', '1', '--batch-size', '2', '--device', 'cpu', '--json', *NO_PRETRAINED,
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False']  # loads in-process
    assert run_script('benchmarks/bench_train.py', argv, monkeypatch) == 0
    figures, = json_lines(capsys.readouterr().out)
    assert figures['input_pipeline'] == 'batched' and figures['data'] == '4 synthetic JPEGs'
    assert figures['batch'] == 2 and figures['images_per_s'] > 0 and figures['readbacks'] == 0
    assert len(list((tmp_path / 'jpegs').glob('*.jpg'))) == 4


@pytest.mark.slow
def bench_threads(tmp_path, monkeypatch, capsys):
    """One busy process, one video frame, one forward; the demo and bench_inference.py run as
    subprocesses (the setting is per process)."""
    argv = [RECIPE, '--settings', 'default', '--frames', '1', '--iters', '1', '--load', '1', '--load-seconds',
            '120']  # CONFIG positional, as every entry point takes it
    assert run_script('benchmarks/bench_threads.py', argv, monkeypatch) == 0
    out = capsys.readouterr().out
    rows = json_lines(out)
    assert [row['setting'] for row in rows] == ['this default (free cores)']
    assert rows[0]['chosen_by'].startswith('free cores: ') and rows[0]['threads'] >= 1
    assert rows[0]['demo_fps'] > 0 and rows[0]['forward_ms'] > 0
    assert 'demo frames/s' in out.splitlines()[-2]  # the table's header


@needs_data
@needs_weights
def gpu_preflight(tmp_path, monkeypatch, capsys):
    """What ``gpu_check.py --dry-run`` runs first: the packages, the host and the sample data, no CUDA."""
    argv = ['--cpu', '--json', '--shared', SHARED]
    assert run_script('benchmarks/gpu_preflight.py', argv, monkeypatch) == 0
    report, = json_lines(capsys.readouterr().out)
    assert report['problems'] == [] and 'cuda' not in report and report['shared']['missing'] == []
    assert report['packages']['torch'] and report['host']['usable_cpus'] >= 1


def synthetic_jpeg(tmp_path, monkeypatch, capsys):
    assert run_script('benchmarks/synthetic_jpeg.py', [tmp_path / 'out', '--images', '2'], monkeypatch) == 0
    assert f"wrote {tmp_path / 'out' / 'ann.json'} and 2 images" in capsys.readouterr().out
    coco = json.loads((tmp_path / 'out' / 'ann.json').read_text())
    assert len(coco['images']) == 2 and coco['annotations']
    assert all(len(ann['keypoints']) == 17 * 3 for ann in coco['annotations'])
    for image in coco['images']:
        assert cv2.imread(str(tmp_path / 'out' / image['file_name'])).shape == (480, 640, 3)


RUN_HERE = {'benchmarks/bench_inference.py': bench_inference, 'benchmarks/bench_onnx.py': bench_onnx,
            'benchmarks/bench_train.py': bench_train, 'benchmarks/bench_threads.py': bench_threads,
            'benchmarks/gpu_preflight.py': gpu_preflight, 'benchmarks/synthetic_jpeg.py': synthetic_jpeg}


@pytest.mark.parametrize('script', [pytest.param(script, marks=getattr(case, 'pytestmark', []))
                                    for script, case in sorted(RUN_HERE.items())])
def test_script_runs(script, tmp_path, monkeypatch, capsys):
    RUN_HERE[script](tmp_path, monkeypatch, capsys)

