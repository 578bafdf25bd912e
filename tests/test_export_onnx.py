"""ONNX export (deploy.export, tools/export_onnx.py): RLE, SimCC and RTMDet-tiny round-trip through ONNX
Runtime within tolerance, with and without in-graph decode / preprocessing / flip test; dynamic batch."""
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

from deploy.export import compare_with_torch, export_detector, export_pose_model  # noqa: E402
from deploy.graph import PoseExportModule  # noqa: E402
from deploy.metadata import read_metadata  # noqa: E402
from models import build_pose_estimator  # noqa: E402
from tests.conftest import (  # noqa: E402
    COCO_ANN,
    FLIP,
    REPO,
    RLE_WEIGHTS,
    SAMPLE_CONFIG,
    build_small,
    crops,
    needs_coco,
    needs_weights,
    rle_cfg,
    simcc_cfg,
)
from utils.config import load_config  # noqa: E402
from utils.registry import MODELS  # noqa: E402


@pytest.mark.parametrize('with_decode,with_preprocess', [(False, False), (True, True)])
def test_rle_round_trip(tmp_path: Path, with_decode: bool, with_preprocess: bool) -> None:
    cfg = rle_cfg()
    model = build_small(cfg)
    path, wrapper, _ = export_pose_model(model, cfg, tmp_path / 'rle.onnx', with_decode=with_decode,
                                         with_preprocess=with_preprocess)
    x = crops(1) if with_preprocess else model.preprocess(crops(1))
    diffs = compare_with_torch(path, wrapper, x)
    assert set(diffs) == ({'keypoints', 'scores'} if with_decode else {'output'})
    assert max(diffs.values()) < 1e-4, diffs
    meta = read_metadata(path)
    assert meta['kind'] == 'pose' and meta['with_decode'] == with_decode and meta['input_size'] == [64, 64]
    if with_decode:  # decoded graph == the head's own decode of the PyTorch outputs
        keypoints, _ = model.head.decode(model(model.preprocess(crops(1))))
        got = wrapper(x)[0]
        assert torch.allclose(got, keypoints, atol=1e-5)


def test_dynamic_batch_and_flip_in_graph(tmp_path: Path) -> None:
    cfg = rle_cfg()
    model = build_small(cfg)
    path, wrapper, _ = export_pose_model(model, cfg, tmp_path / 'rle.onnx', with_decode=True,
                                         with_preprocess=True, dynamic_batch=True, flip_indices=FLIP,
                                         batch_size=2)
    for batch in (1, 5):
        assert max(compare_with_torch(path, wrapper, crops(batch)).values()) < 1e-4
    # in-graph flip test equals TopdownPoseEstimator.predict's flip test (before the crop->image mapping)
    x = crops(3)
    meta = dict(input_size=torch.tensor([[64, 64]] * 3), bbox_center=torch.full((3, 2), 32.0),
                bbox_scale=torch.full((3, 2), 64.0), flip_indices=torch.tensor([FLIP] * 3))
    expected = model.predict(x, meta)['keypoints']
    with torch.no_grad():
        got = wrapper(x)[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.slow
def test_simcc_round_trip(tmp_path: Path) -> None:
    cfg = simcc_cfg()
    model = build_small(cfg)
    path, wrapper, _ = export_pose_model(model, cfg, tmp_path / 'raw.onnx', dynamic_batch=True)
    assert max(compare_with_torch(path, wrapper, model.preprocess(crops(2))).values()) < 1e-4
    path, wrapper, _ = export_pose_model(model, cfg, tmp_path / 'dec.onnx', with_decode=True,
                                         with_preprocess=True, flip_indices=FLIP)
    diffs = compare_with_torch(path, wrapper, crops(1))
    assert diffs['keypoints'] < 1e-4 and diffs['scores'] < 1e-4, diffs


@pytest.mark.slow
def test_rtmdet_tiny_round_trip(tmp_path: Path) -> None:
    cfg = load_config(REPO / 'configs' / 'detection' / 'rtmdet_tiny_8xb32-300e_coco.py')
    cfg.test_pipeline = [dict(type='Resize', scale=(160, 160), keep_ratio=True),
                         dict(type='Pad', size=(160, 160), pad_val=dict(img=(114, 114, 114)))]
    cfg.test_dataloader.dataset.pipeline = cfg.test_pipeline
    torch.manual_seed(0)
    detector = MODELS.build(cfg.model).eval()
    path, wrapper, example = export_detector(detector, cfg, tmp_path / 'det.onnx', with_preprocess=True,
                                             dynamic_batch=True)
    diffs = compare_with_torch(path, wrapper, torch.randint(0, 256, (2, 3, 160, 160), dtype=torch.uint8))
    assert len(diffs) == 6 and max(diffs.values()) < 1e-4, diffs
    assert read_metadata(path)['input_size'] == [160, 160]


def test_missing_onnx_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from deploy import deps

    real = importlib.import_module

    def fake(name: str, *args):
        if name.startswith('onnxruntime'):
            raise ImportError(f'No module named {name!r}')
        return real(name, *args)

    monkeypatch.setattr(deps.importlib, 'import_module', fake)
    with pytest.raises(ImportError, match='requirements-deploy.txt'):
        deps.require('onnxruntime', 'ONNX Runtime inference')


@needs_coco
@needs_weights
@pytest.mark.slow
def test_export_tool_real_rle_weights(tmp_path: Path) -> None:
    from tools.export_onnx import main

    out = tmp_path / 'rle.onnx'
    diffs = main([str(SAMPLE_CONFIG), str(RLE_WEIGHTS),
                  '--output', str(out), '--with-decode', '--with-preprocess', '--dynamic-batch',
                  '--check-data', str(COCO_ANN)])
    assert read_metadata(out)['flip_test']  # the config's test_cfg.flip_test: in the decoded graph
    assert diffs['keypoints'] < 0.0192 and diffs['scores'] < 1e-4, diffs
    meta = read_metadata(out)
    assert meta['with_preprocess'] and meta['mean'] == [128.0, 128.0, 128.0] and meta['bgr_to_rgb']


def test_outputs_have_exact_shapes_and_batch_name(tmp_path: Path) -> None:
    onnx = pytest.importorskip('onnx')
    cfg = rle_cfg()
    path, _, _ = export_pose_model(build_small(cfg), cfg, tmp_path / 'rle.onnx', with_decode=True,
                                   dynamic_batch=True)
    dims = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
            for o in onnx.load(path).graph.output}
    assert dims == {'keypoints': ['batch', 17, 2], 'scores': ['batch', 17]}


def test_dynamo_exporter_asks_for_its_opset(tmp_path: Path) -> None:
    from deploy.export import default_opset, export_module

    assert default_opset('dynamo') == 18 and default_opset('torchscript') == 17
    with pytest.raises(ValueError, match='dynamo exporter writes opset 18 or newer.*--opset 18'):
        export_module(torch.nn.Identity(), torch.zeros(1, 3, 8, 8), tmp_path / 'x.onnx', input_name='input',
                      output_names=['out'], exporter='dynamo', opset=17)


def test_simcc_check_tells_argmax_ties_from_errors(tmp_path: Path) -> None:
    """Untrained SimCC vectors have near-equal bins: ONNX Runtime and PyTorch may pick different ones.
    Those keypoints are counted as ties, not as differences; a keypoint at a non-maximal bin is an error."""
    from deploy.export import _simcc_keypoint_diff

    cfg = simcc_cfg()
    torch.manual_seed(0)
    model = build_pose_estimator(cfg['model']).eval()  # MMPose's init: tiny, nearly flat logits
    path, wrapper, _ = export_pose_model(model, cfg, tmp_path / 'dec.onnx', with_decode=True,
                                         with_preprocess=True, dynamic_batch=True, flip_indices=FLIP)
    x = crops(8)
    diffs = compare_with_torch(path, wrapper, x)
    assert diffs['keypoints'] < 1e-4 and diffs['argmax_ties'] >= 1, diffs
    with torch.no_grad():
        expected = wrapper(x)[0].numpy()
        simcc_x, _ = PoseExportModule(model, wrapper.preprocess, False, FLIP, wrapper.test_cfg)(x)
    wrong = expected.copy()
    wrong[0, 0, 0] = float(simcc_x[0, 0].argmin()) / model.head.simcc_split_ratio  # the least likely bin
    error, _ = _simcc_keypoint_diff(wrapper, x, wrong, expected)
    assert error == pytest.approx(abs(wrong[0, 0, 0] - expected[0, 0, 0]))


def test_export_tool_flip_default(tmp_path: Path) -> None:
    """A decoded graph gets the flip test when the config asks for it; --no-flip-test leaves it out; a raw
    graph is flipped at run time instead."""
    import argparse

    from tools.export_onnx import pose_flip_test

    cfg = load_config(SAMPLE_CONFIG)
    assert cfg.model.test_cfg.flip_test
    for with_decode, flag, expected in [(True, None, True), (True, False, False), (False, None, False),
                                        (False, True, True)]:
        args = argparse.Namespace(with_decode=with_decode, flip_test=flag)
        assert pose_flip_test(cfg, args) is expected
    cfg.model.test_cfg.flip_test = False
    assert not pose_flip_test(cfg, argparse.Namespace(with_decode=True, flip_test=None))


def test_data_errors_name_the_option(tmp_path: Path) -> None:
    from deploy.data import resolve_annotation

    with pytest.raises(FileNotFoundError, match=r'--check-data: annotation file not found: .*nope\.json'):
        resolve_annotation(str(tmp_path / 'nope.json'), option='--check-data')
    with pytest.raises(FileNotFoundError, match='--check-data folder .* exactly one'):
        resolve_annotation(str(tmp_path), option='--check-data')
