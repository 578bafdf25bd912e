"""Every entry point's --help describes its inputs, and the config / checkpoint arguments are the same
everywhere: the config positional first (``--cfg_file`` as an alias), checkpoints as a file, a work dir, a
model-zoo name or a URL."""
import importlib
import sys

import pytest

ENTRY_POINTS = {  # module -> the inputs its --help must name
    'train': ['CONFIG', '--cfg_file'],
    'val': ['CONFIG', 'CHECKPOINT', '--checkpoint', 'work dir', '.onnx', '--dump'],
    'topdown_demo_with_mmdet': ['det_config', 'pose_checkpoint', 'work dir', 'model-zoo name'],
    'tools.browse_dataset': ['CONFIG', '--cfg_file'],
    'tools.convert_checkpoint': ['CHECKPOINT', 'work dir', 'model-zoo name'],
    'tools.eval_predictions': ['--ann-file', '--predictions', 'val.py --dump', 'image_id'],
    'tools.export_onnx': ['CONFIG', 'CHECKPOINT', 'work dir', '--no-flip-test', '--check-data'],
    'tools.model_info': ['CONFIG', 'detector'],
    'tools.plot_curves': ['runs', 'work dirs', '--out'],
    'tools.publish_model': ['CHECKPOINT', 'OUT.pth', 'sha256'],
    'tools.quantize': ['CONFIG', 'CHECKPOINT', 'work dir', '--calib-data'],
    'benchmarks.bench_inference': ['CONFIG', 'CHECKPOINT'],
    'benchmarks.bench_onnx': ['CONFIG', 'CHECKPOINT'],
    'benchmarks.bench_pipeline': ['CONFIG', '--cfg_file'],
    'benchmarks.bench_train': ['CONFIG', '--cfg_file'],
    'benchmarks.bench_threads': ['--threads 1', 'busy processes', '--load-seconds'],
}


@pytest.mark.parametrize('module_name, inputs', ENTRY_POINTS.items())
def test_help_describes_the_inputs(module_name, inputs, monkeypatch, capsys):
    module = importlib.import_module(module_name)
    monkeypatch.setattr(sys, 'argv', [module_name, '--help'])
    entry = getattr(module, 'parse_args', None) or module.main
    with pytest.raises(SystemExit) as exit_info:
        entry()
    assert exit_info.value.code == 0
    text = ' '.join(capsys.readouterr().out.split())  # argparse wraps lines
    for word in inputs:
        assert word in text, f'{module_name} --help does not mention {word!r}'
