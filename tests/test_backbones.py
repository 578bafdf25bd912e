"""Backbones, the GAP neck and shared layers against figures produced by MMPose 1.3.2 (recorded below)."""
import hashlib

import pytest
import torch
from torch import nn

from models.backbones.mobilenet_v2 import MobileNetV2
from models.backbones.shufflenet_v2 import ShuffleNetV2
from models.checkpoints import convert_state_dict, load_checkpoint
from models.layers import Add, ConvBNAct, build_activation, make_divisible
from models.necks.global_average_pooling import GlobalAveragePooling
from tests.conftest import IMAGENET_BACKBONE, needs_weights
from utils.registry import MODELS

# sum(p.numel() for p in upstream.parameters()) / buffers, mmpose.models.backbones in MMPose 1.3.2.
MBV2_PARAMS = {0.5: 687_680, 0.75: 1_355_424, 1.0: 2_223_872, 1.4: 4_315_776}
MBV2_BUFFERS = {0.5: 18_596, 0.75: 26_692, 1.0: 34_164, 1.4: 47_988}
SHUFFLENET_PARAMS = {0.5: 341_792, 1.0: 1_253_604, 1.5: 2_478_624, 2.0: 5_344_996}
# sha256 of '\n'.join(f'{key}:{tuple(shape)}') over the upstream state dict, in order.
MBV2_MMPOSE_KEYS_SHA = {
    0.5: 'eb7e5a165203cd6e717fb92c4029b5f572d21e9999628eb5a25e4b38d7222033',
    0.75: '7165473b5bf331bedaa6a4a1f46d021ca9f21f2be69f5e7cfd420381c36cba19',
    1.0: 'd4996eb88eab0ee1bf2f9fbac10c00f0f78fad2e7dbb61096955d1e8c6e4a3d8',
}
SHUFFLENET_KEYS_SHA = {
    0.5: '49a82f521d1b277a1a95b0fc7fbe9d68917a7f5fa9e053baa79a17dad23386c0',
    1.0: 'a012b1ba96298b0ec2e42de9fb5ce64893175c2631d9ce4a9b7cbc923aa79466',
}
# Upstream MobileNetV2(0.5, out_indices=0..7), eval, ImageNet weights mapped by position, input
# torch.manual_seed(0); torch.randn(2, 3, 192, 192): per stage (mean, mean |x|, out[1, C // 3, 1, 2]).
MBV2_REFERENCE = [
    (-0.003288884544753407, 1.1908378852295778, -1.1105529069900513),
    (0.3545178759832576, 1.6967718438945036, 0.861678421497345),
    (-0.17940262363251552, 1.102117403950893, -0.2812446355819702),
    (0.15752729213303004, 0.8621006376913809, -0.6736384034156799),
    (-0.08365255398154693, 0.5374071358099476, 0.27521446347236633),
    (-0.1360672422497171, 0.39942992950123474, -0.6313636302947998),
    (-0.010966422062721727, 0.20038535846275193, -0.13766008615493774),
    (0.2646236907399289, 0.2646236907399289, 1.7932966947555542),
]
# Upstream ShuffleNetV2(0.5, out_indices=0..3), eval, weights from _fill_seeded, input
# torch.manual_seed(0); torch.randn(1, 3, 128, 96): per stage (mean, mean |x|).
SHUFFLENET_REFERENCE = [(0.21429916296116305, 0.21429916296116305),
                        (0.30934053141022055, 0.30934053141022055),
                        (0.6548529126195919, 0.6548529126195919), (1.406411788247387, 1.406411788247387)]


def _key_sha(state_dict):
    text = '\n'.join(f'{k}:{tuple(v.shape)}' for k, v in state_dict.items())
    return hashlib.sha256(text.encode()).hexdigest()


def _count(tensors):
    return sum(t.numel() for t in tensors)


@pytest.mark.parametrize('widen', sorted(MBV2_PARAMS))
def test_mobilenetv2_sizes_match_mmpose(widen):
    model = MobileNetV2(widen_factor=widen)
    assert _count(model.parameters()) == MBV2_PARAMS[widen]
    assert _count(model.buffers()) == MBV2_BUFFERS[widen]
    if widen in MBV2_MMPOSE_KEYS_SHA:
        mmpose_named = convert_state_dict(model.state_dict(), 'ours', 'mmpose')
        assert _key_sha(mmpose_named) == MBV2_MMPOSE_KEYS_SHA[widen]


def test_mobilenetv2_names_and_shapes():
    model = MobileNetV2(widen_factor=0.5, out_indices=(0, 3, 7)).eval()
    keys = model.state_dict()
    for name in ('conv1.conv.weight', 'conv1.bn.weight', 'block_0.1.dw_conv.weight', 'block_0.1.pw_bn.bias',
                 'block_1.1.conv.weight', 'block_6.1.pw_conv.weight', 'conv2.conv.weight'):
        assert name in keys
    assert 'block_0.1.conv.weight' not in keys  # first stage has no expansion conv
    outs = model(torch.zeros(2, 3, 192, 192))
    assert [tuple(o.shape) for o in outs] == [(2, 8, 96, 96), (2, 32, 12, 12), (2, 1280, 6, 6)]
    assert MobileNetV2(widen_factor=1.4).out_channels == 1792
    with pytest.raises(ValueError, match='out_indices'):
        MobileNetV2(out_indices=(8,))


@needs_weights
def test_mobilenetv2_output_equals_mmpose():
    weights = torch.load(IMAGENET_BACKBONE, map_location='cpu', weights_only=True)
    model = MobileNetV2(widen_factor=0.5, out_indices=tuple(range(8))).eval()
    report = load_checkpoint(model, convert_state_dict(weights, 'original', 'mmpose'))
    assert report.naming == 'mmpose' and not report.missing and not report.unexpected
    torch.manual_seed(0)
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 192, 192))
    for out, (mean, abs_mean, value) in zip(outs, MBV2_REFERENCE, strict=True):
        assert out.double().mean().item() == pytest.approx(mean, abs=1e-5)
        assert out.double().abs().mean().item() == pytest.approx(abs_mean, rel=1e-5)
        assert out[1, out.shape[1] // 3, 1, 2].item() == pytest.approx(value, abs=1e-4)


def test_mobilenetv2_fx_trace_shows_every_residual_add():
    model = MobileNetV2(widen_factor=0.5).eval()
    graph = torch.fx.symbolic_trace(model)
    add_paths = sorted(next(reversed(n.meta['nn_module_stack'])) for n in graph.graph.nodes
                       if n.op == 'call_function' and 'add' in str(n.target))
    expected = sorted(name for name, m in model.named_modules() if isinstance(m, Add))
    assert len(expected) == 10 and add_paths == expected

    class LeafAddTracer(torch.fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return isinstance(m, Add) or super().is_leaf_module(m, qualname)

    leaf_graph = LeafAddTracer().trace(model)
    modules = [n.target for n in leaf_graph.nodes if n.op == 'call_module']
    assert [t for t in modules if t.endswith('.add')] == expected
    assert {'block_1.1.conv', 'block_1.1.bn', 'block_1.1.act', 'block_1.1.dw_act'} <= set(modules)
    x = torch.randn(1, 3, 96, 96)
    torch.testing.assert_close(graph(x)[0], model(x)[0])


def test_mobilenetv2_frozen_stages_and_norm_eval():
    model = MobileNetV2(widen_factor=0.5, frozen_stages=2, norm_eval=False).train()
    assert not any(p.requires_grad for p in model.conv1.parameters())
    assert not any(p.requires_grad for p in model.block_1.parameters())
    assert all(p.requires_grad for p in model.block_2.parameters())
    assert not model.block_1.training and model.block_2.training and not model.conv1.training
    model = MobileNetV2(widen_factor=0.5, norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(bn.training for bn in bns) and model.block_3.training
    before = model.block_3[0].bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(model.block_3[0].bn.running_mean, before)
    assert all(p.requires_grad for p in model.parameters())


@needs_weights
def test_mobilenetv2_pretrained_init_cfg(tmp_path):
    cfg = dict(type='MobileNetV2', widen_factor=0.5,
               init_cfg=dict(type='Pretrained', checkpoint=str(IMAGENET_BACKBONE), prefix='backbone.'))
    model = MODELS.build(cfg)
    model.init_weights()
    weights = torch.load(IMAGENET_BACKBONE, map_location='cpu', weights_only=True)
    torch.testing.assert_close(model.block_3[1].dw_conv.weight, weights['block_3.2.dw_conv.weight'])
    missing = tmp_path / 'nope.pth'
    model = MODELS.build({**cfg, 'init_cfg': dict(type='Pretrained', checkpoint=str(missing))})
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        model.init_weights()


@pytest.mark.parametrize('widen', sorted(SHUFFLENET_PARAMS))
def test_shufflenetv2_sizes_and_names_match_mmpose(widen):
    model = ShuffleNetV2(widen_factor=widen)
    assert _count(model.parameters()) == SHUFFLENET_PARAMS[widen]
    if widen in SHUFFLENET_KEYS_SHA:
        assert _key_sha(model.state_dict()) == SHUFFLENET_KEYS_SHA[widen]


def _fill_seeded(model):
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if not value.is_floating_point():
                continue
            if key.endswith('running_var') or (key.endswith('.weight') and value.dim() == 1):
                value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
            else:
                value.copy_(torch.randn(value.shape, generator=generator) * 0.2)


def test_shufflenetv2_output_equals_mmpose():
    model = ShuffleNetV2(widen_factor=0.5, out_indices=(0, 1, 2, 3))
    _fill_seeded(model)
    model.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 128, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 48, 16, 12), (1, 96, 8, 6), (1, 192, 4, 3), (1, 1024, 4, 3)]
    for out, (mean, abs_mean) in zip(outs, SHUFFLENET_REFERENCE, strict=True):
        assert out.double().mean().item() == pytest.approx(mean, rel=1e-5)
        assert out.double().abs().mean().item() == pytest.approx(abs_mean, rel=1e-5)


def test_shufflenetv2_frozen_stages():
    model = ShuffleNetV2(widen_factor=0.5, frozen_stages=1).train()
    assert not any(p.requires_grad for p in model.layers[0].parameters())
    assert all(p.requires_grad for p in model.layers[1].parameters())
    assert not model.layers[0].training and model.layers[1].training


def test_global_average_pooling_like_mmpose():
    neck = MODELS.build(dict(type='GlobalAveragePooling'))
    assert isinstance(neck, GlobalAveragePooling)
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    out = neck(x)
    torch.testing.assert_close(out, x.mean(dim=(2, 3)))
    single = neck((x[:1], x[:1, :2]))
    assert isinstance(single, tuple) and [tuple(t.shape) for t in single] == [(1, 3), (1, 2)]
    assert isinstance(neck([x]), list)
    with pytest.raises(TypeError, match='GlobalAveragePooling'):
        neck({'x': x})


def test_layers():
    assert [make_divisible(c * 0.5, 8) for c in (32, 16, 24, 320)] == [16, 8, 16, 160]
    assert make_divisible(10, 8) == 16  # 8 would lose more than 10 %
    block = ConvBNAct(4, 6, 3, stride=2, act=dict(type='SiLU'))
    assert block.conv.bias is None and isinstance(block.act, nn.SiLU) and block.conv.padding == (1, 1)
    assert ConvBNAct(4, 6, norm=None, act=None).conv.bias is not None
    assert block(torch.zeros(1, 4, 8, 8)).shape == (1, 6, 4, 4)
    with pytest.raises(KeyError, match='unknown activation'):
        build_activation('Relu7')
    torch.testing.assert_close(Add()(torch.ones(2), torch.ones(2)), torch.full((2,), 2.0))
