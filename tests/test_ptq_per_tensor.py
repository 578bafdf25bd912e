"""Per-tensor int8 weights: cross-layer equalization (deploy.equalization) keeps the float network and
equalizes its weight ranges, respecting ReLU6's clip and residual adds; tools/quantize.py --per-tensor
stays close to float on the real RLE-0.5x weights and warns when the int8 AP falls far below float."""
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deploy.equalization import equalize_cross_layer, find_equalization_pairs
from deploy.weight_rounding import fold_batch_norms, round_weights_mse
from models.layers import Add
from tests.conftest import (
    COCO_ANN,
    RLE_WEIGHTS,
    SAMPLE_CONFIG,
    assert_no_int16_saturation,
    build_small,
    crops,
    needs_coco,
    needs_weights,
    rle_cfg,
)


def _ranges(layer: nn.Module) -> torch.Tensor:
    return layer.weight.detach().flatten(1).abs().amax(dim=1)


def _uneven(channels: int, seed: int) -> torch.Tensor:
    """(channels,) per-channel factors spread over four orders of magnitude."""
    order = torch.randperm(channels, generator=torch.Generator().manual_seed(seed))
    return torch.logspace(-2, 2, channels)[order]


class Chain(nn.Module):
    """conv -> act -> depthwise -> act -> 1x1 (+ input: not scalable) -> 1x1 -> GAP -> Linear."""

    def __init__(self, act: type[nn.Module]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = act()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.dw_act = act()
        self.pw = nn.Conv2d(8, 3, 1)
        self.add = Add()
        self.last = nn.Conv2d(3, 6, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 4)
        with torch.no_grad():
            for i, layer in enumerate((self.conv, self.dw, self.last)):
                layer.weight.mul_(_uneven(layer.out_channels, i).view(-1, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.add(x, self.pw(self.dw_act(self.dw(self.act(self.conv(x))))))
        return self.fc(torch.flatten(self.pool(self.last(out)), 1))


def test_equalization_keeps_outputs_and_equalizes_ranges() -> None:
    torch.manual_seed(0)
    net, x = Chain(nn.ReLU).eval(), torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        before = net(x)
    pw_weight = net.pw.weight.detach().clone()
    pairs = equalize_cross_layer(net, x)
    # conv -> dw, dw -> pw, last -> fc (through pooling and flatten); pw feeds the residual add: no pair
    assert [pair.name for pair in pairs] == ['conv', 'dw', 'last']
    with torch.no_grad():
        assert torch.allclose(net(x), before, rtol=1e-5, atol=1e-5 * before.abs().max())
    # each channel's range is the geometric mean of the pair's: equal on both sides after convergence
    dw_inputs = _ranges(net.dw)
    assert torch.allclose(_ranges(net.conv), dw_inputs, rtol=1e-3)
    assert torch.allclose(net.pw.weight.detach().transpose(0, 1).flatten(1).abs().amax(dim=1),
                          _ranges(net.dw), rtol=1e-3)
    assert not torch.equal(net.pw.weight.detach(), pw_weight)  # scaled as dw's consumer only
    # the Linear head stays float in the int8 graph: its producer's channels all get one range
    assert torch.allclose(_ranges(net.last), _ranges(net.last).max().expand(6), rtol=1e-5)


def test_equalization_leaves_relu6_clipped_channels_and_stays_below_the_clip() -> None:
    torch.manual_seed(0)
    net, x = Chain(nn.ReLU6).eval(), torch.randn(16, 3, 16, 16)
    with torch.no_grad():
        spread = torch.tensor([0.1, 0.01, 0.001, 0.03]).view(-1, 1, 1, 1)
        net.conv.weight[4:] = torch.randn(4, 3, 3, 3) * spread
        net.conv.bias[:4] = 20.0  # channels 0-3 sit at the clip (6), channels 4-7 stay below it
        net.conv.bias[4:] = 0.0
        assert (net.conv(x)[:, 4:].amax(dim=(0, 2, 3)) < 5.4).all()
        before = net(x)
        conv_before = net.conv.weight.clone()
    equalize_cross_layer(net, x)
    with torch.no_grad():
        assert torch.allclose(net(x), before, rtol=1e-5, atol=1e-5 * before.abs().max())
        assert torch.equal(net.conv.weight[:4], conv_before[:4])  # scaling them would move the clip
        assert not torch.allclose(net.conv.weight[4:], conv_before[4:])
        assert net.conv(x)[:, 4:].max() <= 6.0 * 0.9 + 1e-4  # equalized channels stay below the clip


def test_equalization_finds_mobilenet_pairs_and_per_tensor_grid() -> None:
    model = build_small(rle_cfg())
    x = model.preprocess(crops(4))
    fold_batch_norms(model)
    pairs = {pair.name: pair for pair in find_equalization_pairs(model, x[:1])}
    # expand -> dw and dw -> project in every block, conv1 -> block_0's dw, conv2 -> the RLE head's two fcs;
    # no project conv whose output meets a residual add
    assert pairs['backbone.block_1.1.conv'].clip == 6.0 and pairs['backbone.block_1.1.dw_conv'].clip == 6.0
    assert len(pairs['backbone.conv2.conv'].consumers) == 2
    assert 'backbone.block_1.2.pw_conv' not in pairs and 'backbone.block_1.1.pw_conv' not in pairs
    # per-tensor rounding: one grid for the whole tensor, its top level the largest magnitude
    layer = model.backbone.get_submodule('block_1.1.dw_conv')
    round_weights_mse(layer, levels=127, per_channel=False)
    weight = layer.weight.detach()
    steps = weight / (weight.abs().max() / 127)
    assert torch.allclose(steps, steps.round(), atol=1e-3)


def test_quantize_warns_when_int8_ap_falls_far_below_float(capsys: pytest.CaptureFixture) -> None:
    from tools.quantize import warn_on_ap_drop

    assert not warn_on_ap_drop(0.62, 0.61, per_tensor=False)
    assert warn_on_ap_drop(0.62, 0.29, per_tensor=True)
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('warning: int8 COCO AP 0.2900 is far below float 0.6200')


@needs_coco
@needs_weights
@pytest.mark.slow
def test_quantize_tool_real_rle_per_tensor(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip('onnxruntime')
    from deploy.ort_backend import optimized_op_counts
    from tools.quantize import main

    report = main([str(SAMPLE_CONFIG), str(RLE_WEIGHTS), '--calib-data', str(COCO_ANN),
                   '--out', str(tmp_path / 'int8.onnx'), '--per-tensor'])
    # without equalization (and with per-channel grids re-rounded per tensor): 181 px, AP 0.0
    assert report['deviation_px']['mean_px'] < 10.0, report['deviation_px']
    assert report['int8_ap']['coco/AP'] > 0.2, report['int8_ap']
    assert 'warning: int8 COCO AP' in capsys.readouterr().err
    # one scale per weight tensor, on int8 kernels, with no int16 saturation on x86 CPUs without VNNI
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(tmp_path / 'int8.onnx')).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    scales = [inits[node.input[1]].size for node in graph.node if node.op_type == 'DequantizeLinear'
              and node.input[0] in inits and inits[node.input[0]].dtype == np.int8]
    assert len(scales) == 52 and set(scales) == {1}
    assert optimized_op_counts(tmp_path / 'int8.onnx').get('QLinearConv') == 52
    assert_no_int16_saturation(tmp_path / 'int8.onnx')
