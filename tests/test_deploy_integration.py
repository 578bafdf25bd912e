"""Deployment wired into the entry points: QAT through train.py (train, resume, val.py, int8 export) and
ONNX models through apis / the demo, which must give the PyTorch path's predictions json."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('onnxruntime')
pytest.importorskip('onnx')

import topdown_demo_with_mmdet as demo  # noqa: E402
import train  # noqa: E402
import val  # noqa: E402
from deploy.metadata import read_metadata  # noqa: E402
from tests.conftest import (  # noqa: E402
    COCO,
    COCO_ANN,
    REPO,
    RLE_WEIGHTS,
    SAMPLE_CONFIG,
    assert_no_int16_saturation,
    int8_conv_level_errors,
    needs_coco,
    needs_weights,
    ort_run,
    ort_session,
    sample_config_options,
)
from tools import export_onnx  # noqa: E402

POSE_CFG = 'configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py'


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the entry points run from the repository root, as in the README


@needs_coco
@needs_weights
@pytest.mark.slow
def test_qat_run_trains_resumes_validates_and_exports_int8(tmp_path: Path) -> None:
    work = tmp_path / 'qat'
    common = ['--cfg_file', str(SAMPLE_CONFIG), '--device', 'cpu', '--work-dir', str(work), '--cfg-options',
              "quantization={'mode': 'qat'}", 'train_dataloader.batch_size=6', *sample_config_options()]
    assert train.main([*common, 'train_cfg.max_epochs=1']) == 0
    log = (work / 'train.log').read_text()
    assert 'quantisation-aware training' in log
    assert train.main([*common, 'train_cfg.max_epochs=2', '--resume', 'auto']) == 0
    assert 'continuing at epoch 2' in (work / 'train.log').read_text()

    dumped = work / SAMPLE_CONFIG.name
    metrics = val.main(['--cfg_file', str(dumped), '--checkpoint', str(work / 'last.pth'),
                        '--device', 'cpu', '--no-flip'])
    assert 0.0 <= metrics['coco/AP'] <= 1.0

    onnx_path = tmp_path / 'qat_int8.onnx'
    export_onnx.main([str(dumped), str(work / 'last.pth'), '--output', str(onnx_path), '--with-decode',
                      '--with-preprocess'])
    assert read_metadata(onnx_path)['quantization'] == {'mode': 'qat'}
    import onnx
    ops = {node.op_type for node in onnx.load(str(onnx_path)).graph.node}
    assert 'QuantizeLinear' in ops and 'DequantizeLinear' in ops
    # the file computes alike on every CPU: no int16 saturation possible in ONNX Runtime's x86 kernels
    # without VNNI, every int8 kernel within a rounding tie of the file's ops, and the optimised graph
    # near the graph run op by op (before: 50 of 52 convs wrong on such a CPU, keypoints 83 px apart)
    from deploy.data import annotation_loader, stack_inputs
    from utils.config import load_config

    assert_no_int16_saturation(onnx_path)
    x = stack_inputs(annotation_loader(load_config(str(dumped)), str(COCO_ANN), str(COCO)))
    errors = int8_conv_level_errors(onnx_path, x)
    assert len(errors) == 2 * 52 and max(errors.values()) <= 1, errors  # the flip test: two passes
    kernels, op_by_op = (ort_run(ort_session(onnx_path, optimized), x)[0] for optimized in (True, False))
    assert np.linalg.norm(kernels - op_by_op, axis=-1).mean() < 5.0


def _instances(path: Path) -> tuple[list, np.ndarray]:
    data = json.loads(path.read_text())
    kpts = [inst['keypoints'] for frame in data['instance_info'] for inst in frame['instances']]
    return data['meta_info'], np.asarray(kpts, dtype=np.float64)


@needs_coco
@needs_weights
def test_demo_with_onnx_pose_model_writes_the_same_predictions(tmp_path: Path) -> None:
    onnx_path = tmp_path / 'rle.onnx'
    export_onnx.main([POSE_CFG, str(RLE_WEIGHTS), '--output', str(onnx_path), '--dynamic-batch',
                      '--check-data', str(COCO_ANN)])
    outputs = {}
    for name, ckpt in (('torch', RLE_WEIGHTS), ('onnx', onnx_path)):
        out = tmp_path / name
        assert demo.main(['none', 'none', POSE_CFG, str(ckpt), '--input', str(COCO), '--output-root',
                          str(out), '--save-predictions', '--device', 'cpu']) == 0
        outputs[name] = _instances(out / 'results_coco.json')
    (meta_t, kpts_t), (meta_o, kpts_o) = outputs['torch'], outputs['onnx']
    assert meta_t == meta_o
    assert kpts_t.shape == kpts_o.shape == (4, 17, 2)
    np.testing.assert_allclose(kpts_o, kpts_t, atol=0.02)
