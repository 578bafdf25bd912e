"""int8 quantisation: ORT static PTQ (deploy.ptq, tools/quantize.py) and FX quantisation-aware training
(models.qat, deploy.qat): int8 graphs run on int8 kernels and stay close to float; QAT trains, resumes
and exports."""
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

from deploy.export import export_pose_model  # noqa: E402
from deploy.metadata import read_metadata  # noqa: E402
from deploy.ort_backend import create_session, optimized_op_counts  # noqa: E402
from deploy.ptq import quantize_static_int8  # noqa: E402
from deploy.qat import export_qat_onnx  # noqa: E402
from deploy.weight_rounding import INT8_LEVELS, REDUCED_LEVELS, prepare_weights_for_int8  # noqa: E402
from models import build_pose_estimator  # noqa: E402
from models.qat import prepare_qat  # noqa: E402
from tests.conftest import (  # noqa: E402
    COCO_ANN,
    REPO,
    RLE_WEIGHTS,
    SAMPLE_CONFIG,
    build_small,
    crops,
    needs_coco,
    needs_weights,
    rle_cfg,
    sample_config_options,
)


def assert_int8_kernels(path: str | Path) -> None:
    """Every convolution runs as QLinearConv (no float Conv / FusedConv left)."""
    ops = optimized_op_counts(path)
    assert ops.get('QLinearConv', 0) == 52 and not ops.get('Conv') and not ops.get('FusedConv'), ops


def assert_no_int16_saturation(path: str | Path) -> None:
    """The int8 weights of every convolution but the depthwise ones lie in [-64, 64], so that no pair of
    u8 x s8 products can overflow int16 in ONNX Runtime's x86 kernels without VNNI (``vpmaddubsw``);
    depthwise ones (computed exactly) keep the full [-127, 127] range. Checked on the file: it holds on
    every CPU, whatever this machine's kernels do."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    weights = {node.output[0]: inits[node.input[0]] for node in graph.node
               if node.op_type == 'DequantizeLinear' and node.input[0] in inits
               and inits[node.input[0]].dtype == np.int8}
    levels = {'dense': set(), 'depthwise': set()}
    for node in graph.node:
        if node.op_type == 'Conv' and node.input[1] in weights:
            q = weights[node.input[1]]
            group = next((a.i for a in node.attribute if a.name == 'group'), 1)
            kind = 'depthwise' if q.shape[1] == 1 and q.shape[0] == group > 1 else 'dense'
            levels[kind].add(int(np.abs(q.astype(np.int32)).max()))
    assert levels['dense'] and max(levels['dense']) <= REDUCED_LEVELS, levels
    assert levels['depthwise'] and max(levels['depthwise']) == INT8_LEVELS, levels


@pytest.mark.slow
def test_ptq_static_int8_runs_on_int8_kernels(tmp_path: Path) -> None:
    cfg = rle_cfg()
    model = build_small(cfg)
    float_path, _, _ = export_pose_model(model, cfg, tmp_path / 'float.onnx', with_decode=True,
                                         with_preprocess=True, dynamic_batch=True)
    int8_path = quantize_static_int8(float_path, tmp_path / 'int8.onnx', crops(8).numpy())
    assert read_metadata(int8_path)['quantization'] == dict(mode='ptq', method='minmax', per_channel=True)
    assert_int8_kernels(int8_path)
    assert_no_int16_saturation(int8_path)
    session = create_session(int8_path)
    keypoints, scores = session.run(None, {'input': crops(3).numpy()})
    assert keypoints.shape == (3, 17, 2) and scores.shape == (3, 17) and np.isfinite(keypoints).all()


def test_weight_preparation_keeps_float_outputs_and_snaps_to_int8_grid() -> None:
    cfg = rle_cfg()
    model = build_small(cfg)
    x = model.preprocess(crops(8))
    with torch.no_grad():
        before = model(x)
    prepare_weights_for_int8(model, x)
    assert isinstance(model.backbone.conv1.bn, torch.nn.Identity)  # BN folded into the conv
    depthwise = model.backbone.get_submodule('block_1.1.dw_conv')
    assert depthwise.groups == depthwise.in_channels == depthwise.out_channels
    # every weight on its channel's int8 grid: [-64, 64] in dense convs (no int16 saturation in ONNX
    # Runtime's x86 kernels), [-127, 127] in depthwise ones
    for conv, levels in ((model.backbone.conv1.conv, REDUCED_LEVELS), (depthwise, INT8_LEVELS)):
        weight = conv.weight.detach().flatten(1)
        steps = weight / (weight.abs().amax(dim=1, keepdim=True) / levels)
        assert torch.allclose(steps, steps.round(), atol=1e-3), levels
    with torch.no_grad():
        assert (model(x) - before).abs().max() < 0.05


@needs_coco
@needs_weights
@pytest.mark.slow
def test_quantize_tool_real_rle_within_deviation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    from tools.quantize import main

    report = main([str(SAMPLE_CONFIG), str(RLE_WEIGHTS),
                   '--calib-data', str(COCO_ANN), '--output', str(tmp_path / 'int8.onnx')])
    assert report['deviation_px']['mean_px'] < 2.0, report['deviation_px']
    assert report['int8_ap']['coco/AP'] > report['float_ap']['coco/AP'] - 0.03, report
    assert_int8_kernels(tmp_path / 'int8.onnx')
    assert_no_int16_saturation(tmp_path / 'int8.onnx')  # else ~19 px on x86 CPUs without VNNI
    # val.py evaluates the int8 file with the same metrics (GT boxes, no flip, as the report above)
    import val

    monkeypatch.chdir(REPO)
    metrics = val.main([str(SAMPLE_CONFIG), str(tmp_path / 'int8.onnx'), '--no-flip', '--device', 'cpu',
                        '--cfg-options', *sample_config_options()])
    assert 'ONNX Runtime, int8' in capsys.readouterr().out
    assert metrics['coco/AP'] == pytest.approx(report['int8_ap']['coco/AP'], abs=1e-4)


@pytest.mark.slow
def test_qat_trains_resumes_and_exports_int8(tmp_path: Path) -> None:
    cfg = rle_cfg()
    model = build_small(cfg)
    qat = prepare_qat(model, dict(mode='qat'))
    optimizer = torch.optim.AdamW(qat.parameters(), lr=1e-3)
    x = crops(4)
    targets = dict(keypoint_labels=torch.rand(4, 17, 2), keypoint_weights=torch.ones(4, 17))
    losses = []
    for _ in range(3):
        loss = sum(v for k, v in qat.loss(x, targets).items() if k.startswith('loss'))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    torch.save({'state_dict': qat.state_dict()}, tmp_path / 'qat.pth')

    resumed = prepare_qat(build_pose_estimator(cfg['model']), dict(mode='qat'))
    resumed.load_state_dict(torch.load(tmp_path / 'qat.pth', weights_only=True)['state_dict'])
    qat.eval()
    resumed.eval()
    with torch.no_grad():
        assert torch.equal(resumed(qat.preprocess(x)), qat(qat.preprocess(x)))
    meta = dict(input_size=torch.tensor([[64, 64]] * 4), bbox_center=torch.full((4, 2), 32.0),
                bbox_scale=torch.full((4, 2), 64.0), flip_indices=torch.tensor([list(range(17))] * 4))
    assert resumed.predict(x, meta)['keypoints'].shape == (4, 17, 2)

    path, wrapper, _ = export_qat_onnx(resumed, cfg, str(tmp_path / 'qat.onnx'), with_decode=True,
                                       with_preprocess=True, dynamic_batch=True)
    assert read_metadata(path)['quantization'] == dict(mode='qat')
    assert_int8_kernels(path)
    keypoints, _ = create_session(path).run(None, {'input': x.numpy()})
    with torch.no_grad():
        expected = wrapper(x)[0].numpy()
    assert np.abs(keypoints - expected).max() < 2.0  # int8 kernels vs fake-quant: a few quantisation steps


def test_prepare_qat_rejects_unknown_options() -> None:
    with pytest.raises(KeyError, match='unknown keys'):
        prepare_qat(build_small(rle_cfg()), dict(mode='qat', bits=4))
    with pytest.raises(ValueError, match="mode='qat'"):
        prepare_qat(build_small(rle_cfg()), dict(mode='ptq'))
