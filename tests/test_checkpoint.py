"""Checkpoint reading, format detection, MMPose <-> original naming, loading and atomic saving."""
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models.backbones.mobilenet_v2 import MobileNetV2
from models.checkpoints import (
    CHECKPOINT_MARKER,
    CheckpointError,
    convert_state_dict,
    detect_format,
    detect_naming,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from models.checkpoints.unpickler import Placeholder
from models.necks.global_average_pooling import GlobalAveragePooling
from tests.conftest import IMAGENET_BACKBONE, RLE_WEIGHTS, UDP_BACKBONE, HistoryBuffer, needs_weights
from tools.convert_checkpoint import main as convert_main

# Key names of MMPose 1.3.2's RLEHead(in_channels=1280, num_joints=17) outside its flow model.
MMPOSE_RLE_FC = {'head.fc.weight': (68, 1280), 'head.fc.bias': (68,)}
# sha256 of '\n'.join(f'{key}:{tuple(shape)}' for key in sorted(keys)) over the state dict of MMPose 1.3.2's
# TopdownPoseEstimator(MobileNetV2(widen_factor=0.5), GlobalAveragePooling, RLEHead(1280, 17)): 389 tensors.
MMPOSE_RLE_MODEL_KEYS_SHA = '04a8ca8da58d52ba3c08a6e0567ed506a33bd890f17b88ee309f537b2ccbdbd7'
# That MMPose model, loaded (strict) with the real RLE checkpoint converted by tools/convert_checkpoint.py
# --to mmpose, eval, model(x, mode='tensor') for x = torch.manual_seed(0); torch.randn(2, 3, 192, 192):
# output (2, 17, 4): its sum, out[1, 5], out[0, 16].
MMPOSE_RLE_OUTPUT = (639.1879032850266, [0.6599339246749878, 0.1460220068693161, 7.557406425476074,
                                         3.1233720779418945],
                     [0.477051705121994, 0.8455173373222351, 5.89663028717041, 4.154870986938477])


class _Flow(nn.Module):
    """Stand-in with the RealNVP tensor names and shapes of the RLE loss (s/t nets, loc, cov, mask)."""

    def __init__(self) -> None:
        super().__init__()

        def net():
            return nn.Sequential(nn.Linear(2, 64), nn.LeakyReLU(), nn.Linear(64, 64), nn.LeakyReLU(),
                                 nn.Linear(64, 2), nn.Tanh())

        self.register_buffer('loc', torch.zeros(2))
        self.register_buffer('cov', torch.eye(2))
        self.register_buffer('mask', torch.zeros(6, 2))
        self.s = nn.ModuleList(net() for _ in range(6))
        self.t = nn.ModuleList(net() for _ in range(6))


class _RLEModel(nn.Module):
    """Stand-in for TopdownPoseEstimator(MobileNetV2-0.5x, GAP, RLEHead) with the project's names."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = MobileNetV2(widen_factor=0.5)
        self.neck = GlobalAveragePooling()
        self.head = nn.Module()
        self.head.fc_coord = nn.Linear(1280, 34)
        self.head.fc_sigma = nn.Linear(1280, 34)
        self.head.loss_module = nn.Module()
        self.head.loss_module.flow_model = _Flow()


def _assert_same(a, b):
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope='module')
def rle_original():
    """The original project's RLE-0.5x state dict (tests marked needs_weights)."""
    return torch.load(RLE_WEIGHTS, map_location='cpu', weights_only=True)


@needs_weights
def test_real_original_checkpoint_loads_strictly(rle_original):
    model = _RLEModel()
    report = load_checkpoint(model, RLE_WEIGHTS)
    assert (report.format, report.naming) == ('original', 'original')
    assert report.missing == report.unexpected == []
    _assert_same(model.state_dict(), {k: rle_original[k] for k in model.state_dict()})
    wrapped = {'model': rle_original}
    assert detect_format(wrapped) == 'original'
    assert load_checkpoint(_RLEModel(), wrapped).format == 'original'


@needs_weights
def test_original_checkpoint_reproduces_mmpose_output():
    model = _RLEModel().eval()
    load_checkpoint(model, RLE_WEIGHTS)
    torch.manual_seed(0)
    with torch.no_grad():
        feats = model.neck(model.backbone(torch.randn(2, 3, 192, 192)))[0]
        out = torch.cat([model.head.fc_coord(feats).reshape(2, 17, 2),
                         model.head.fc_sigma(feats).reshape(2, 17, 2)], dim=-1)
    total, row_1_5, row_0_16 = MMPOSE_RLE_OUTPUT
    assert out.double().sum().item() == pytest.approx(total, rel=1e-6)
    torch.testing.assert_close(out[1, 5], torch.tensor(row_1_5), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[0, 16], torch.tensor(row_0_16), rtol=1e-5, atol=1e-5)


@needs_weights
def test_mmpose_round_trip_and_rle_head_split(rle_original):
    mmpose = convert_state_dict(rle_original, 'original', 'mmpose')
    assert detect_naming(mmpose) == 'mmpose'
    assert {k: tuple(mmpose[k].shape) for k in MMPOSE_RLE_FC} == MMPOSE_RLE_FC
    listing = '\n'.join(f'{k}:{tuple(mmpose[k].shape)}' for k in sorted(mmpose))
    assert hashlib.sha256(listing.encode()).hexdigest() == MMPOSE_RLE_MODEL_KEYS_SHA
    assert not any(k.startswith('head.fc_') or '.block_' in k for k in mmpose)
    assert 'backbone.layer1.0.conv.1.bn.running_var' in mmpose
    assert 'backbone.layer7.0.conv.2.conv.weight' in mmpose and 'backbone.conv2.conv.weight' in mmpose
    _assert_same(convert_state_dict(mmpose, 'mmpose', 'ours'), rle_original)
    _assert_same(convert_state_dict(convert_state_dict(mmpose, 'mmpose', 'ours'), 'ours', 'mmpose'), mmpose)
    # MMPose's fc output reshaped (K, 4) = (x, y, sigma_x, sigma_y) equals [fc_coord (K, 2), fc_sigma (K, 2)].
    feats = torch.randn(3, 1280, generator=torch.Generator().manual_seed(0))
    upstream = nn.functional.linear(feats, mmpose['head.fc.weight'], mmpose['head.fc.bias']).reshape(3, 17, 4)
    coord, sigma = (nn.functional.linear(feats, rle_original[f'head.{name}.weight'],
                                         rle_original[f'head.{name}.bias']).reshape(3, 17, 2)
                    for name in ('fc_coord', 'fc_sigma'))
    # rows are identical; only the float summation order of the two matmuls may differ
    torch.testing.assert_close(upstream, torch.cat([coord, sigma], dim=-1), rtol=1e-5, atol=1e-5)


@needs_weights
def test_official_mmpose_checkpoint_with_numpy_meta(tmp_path, rle_original):
    path = tmp_path / 'mmpose.pth'
    meta = {'dataset_meta': {'sigmas': np.array([0.026, 0.025], dtype=np.float32), 'num_keypoints': 17,
                             'flip_indices': np.arange(3), 'scale': np.float64(1.5)}}
    state = convert_state_dict(rle_original, 'original', 'mmpose')
    state['data_preprocessor.mean'] = torch.ones(3)  # ignored: the model takes mean/std from its config
    torch.save({'state_dict': state, 'meta': meta}, path)
    loaded = read_checkpoint(path)
    np.testing.assert_array_equal(loaded['meta']['dataset_meta']['sigmas'], meta['dataset_meta']['sigmas'])
    assert detect_format(loaded) == 'mmpose'
    model = _RLEModel()
    report = load_checkpoint(model, path)
    assert (report.format, report.naming, report.missing, report.unexpected) == ('mmpose', 'mmpose', [], [])
    _assert_same(model.state_dict(), {k: rle_original[k] for k in model.state_dict()})


@needs_weights
@pytest.mark.parametrize('path', [IMAGENET_BACKBONE, UDP_BACKBONE], ids=['no-prefix', 'backbone-prefix'])
def test_backbone_only_files(path):
    source = torch.load(path, map_location='cpu', weights_only=True)
    expected = {k.removeprefix('backbone.'): v for k, v in source.items()}
    assert detect_format(source) == 'backbone'
    model = _RLEModel()
    head_before = model.head.fc_coord.weight.clone()
    report = load_checkpoint(model, path)
    assert (report.format, report.missing, report.unexpected) == ('backbone', [], [])
    _assert_same(model.backbone.state_dict(), expected)
    assert torch.equal(model.head.fc_coord.weight, head_before)
    backbone = MobileNetV2(widen_factor=0.5)
    for prefix in (None, 'backbone.'):
        assert not load_checkpoint(backbone, path, prefix=prefix).missing
        _assert_same(backbone.state_dict(), expected)
    mmpose_named = convert_state_dict(source, 'original', 'mmpose')
    assert detect_format(mmpose_named) == 'backbone'
    load_checkpoint(backbone, mmpose_named, prefix='backbone.')
    _assert_same(backbone.state_dict(), expected)


def test_other_heads_keep_their_names():
    backbone = convert_state_dict(MobileNetV2(widen_factor=0.5).state_dict(), 'ours', 'mmpose')
    heads = {'head.final_layer.weight': torch.zeros(17, 1280, 1, 1),
             'head.mlp_head_x.weight': torch.zeros(384, 36), 'head.mlp_head_y.bias': torch.zeros(384)}
    state = {**{f'backbone.{k}': v for k, v in backbone.items()}, **heads}
    converted = convert_state_dict(state, 'mmpose', 'ours')
    assert detect_naming(state) == 'mmpose' and detect_naming(converted) == 'original'
    assert all(converted[k] is v for k, v in heads.items())
    assert 'backbone.block_5.3.pw_bn.running_mean' in converted
    regression = {'head.fc.weight': torch.zeros(34, 1280), 'head.fc.bias': torch.zeros(34)}
    assert list(convert_state_dict(regression, 'mmpose', 'ours')) == list(regression)  # no flow: not RLE
    with pytest.raises(ValueError, match='layout'):
        convert_state_dict(regression, 'mmpose', 'mmcv')


def test_own_checkpoint_format_and_atomic_save(tmp_path):
    model = MobileNetV2(widen_factor=0.5)
    path = tmp_path / 'sub' / 'epoch_1.pth'
    payload = {'state_dict': model.state_dict(), 'meta': {'epoch': 1, 'sigmas': np.ones(2)}, 'optimizer': {}}
    save_checkpoint(path, payload)
    assert CHECKPOINT_MARKER not in payload['meta']  # caller's payload untouched
    loaded = read_checkpoint(path)
    assert detect_format(loaded) == 'ours' and loaded['meta'][CHECKPOINT_MARKER] == 1
    other = MobileNetV2(widen_factor=0.5)
    assert load_checkpoint(other, path).format == 'ours'
    _assert_same(other.state_dict(), model.state_dict())
    with pytest.raises(KeyError, match='state_dict'):
        save_checkpoint(path, {'meta': {}})
    with pytest.raises(Exception):  # noqa: B017  (pickling a lambda fails inside torch.save)
        save_checkpoint(path, {'state_dict': {}, 'meta': {'bad': lambda: None}})
    assert read_checkpoint(path)['meta']['epoch'] == 1  # the previous file survived the failed write
    assert sorted(os.listdir(path.parent)) == ['epoch_1.pth']  # no temporary file left behind


class _SystemCall:
    """A malicious payload: unpickling it would call ``os.system`` (creating ``marker``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def test_torch_version_metadata_loads_weights_only(tmp_path):
    model = GlobalAveragePooling()
    path = tmp_path / 'tv.pth'
    meta = {'torch': torch.__version__, 'seed': np.int64(3)}
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': meta}, path)
    checkpoint = read_checkpoint(path)
    assert checkpoint['meta']['torch'] == str(torch.__version__) and checkpoint['meta']['seed'] == 3
    assert type(checkpoint['meta']['torch']).__name__ == 'TorchVersion'
    assert load_checkpoint(model, checkpoint, strict=False).unexpected == ['w']


def test_mmengine_training_checkpoint_gives_its_state_dict(tmp_path):
    """A training run's file (message_hub buffers, optimizer state, numpy meta) loads; the foreign class
    becomes an inert placeholder holding its pickled state."""
    model = MobileNetV2(widen_factor=0.5)
    state = {f'backbone.{k}': v for k, v in model.state_dict().items()}
    path = tmp_path / 'epoch_3.pth'
    torch.save({'meta': {'epoch': 3, 'mmengine_version': '0.10.7', 'dataset_meta': {'sigmas': np.ones(17)},
                         'torch': torch.__version__},
                'state_dict': state,
                'message_hub': {'log_scalars': {'train/loss': HistoryBuffer()},
                                'runtime_info': {'epoch': 3}},
                'optimizer': {'state': {0: {'exp_avg': torch.zeros(3)}}, 'param_groups': [{'lr': 1e-3}]}},
               path)
    checkpoint = read_checkpoint(path)
    buffer = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, Placeholder) and buffer.target.endswith('.HistoryBuffer')
    np.testing.assert_array_equal(buffer.state['_log_history'], [1.5, 2.5])
    report = load_checkpoint(model, path, strict=True)
    assert report.format == 'backbone' and not report.missing
    assert all(torch.equal(v, state[f'backbone.{k}']) for k, v in model.state_dict().items())


@pytest.mark.parametrize('zip_format', [True, False])
def test_malicious_pickle_does_not_run(tmp_path, zip_format):
    """``os.system`` in ``__reduce__`` becomes a placeholder that records its argument; nothing runs."""
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'conv.weight': torch.ones(1)}, 'payload': _SystemCall(marker)}, path,
               _use_new_zipfile_serialization=zip_format)
    checkpoint = read_checkpoint(path)
    assert not marker.exists()
    assert isinstance(checkpoint['payload'], Placeholder)
    assert checkpoint['payload'].target in ('posix.system', 'nt.system', 'os.system')
    assert checkpoint['payload'].args == (f'touch {marker}',)
    assert torch.equal(checkpoint['state_dict']['conv.weight'], torch.ones(1))
    torch.save({'state_dict': {'conv.weight': _SystemCall(marker)}}, path)  # in the state dict itself
    with pytest.raises(CheckpointError, match='no state dict found'):
        load_checkpoint(nn.Conv2d(1, 1, 1), path)
    assert not marker.exists()


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='absent.pth'):
        read_checkpoint(tmp_path / 'absent.pth')
    (tmp_path / 'text.pth').write_text('not a checkpoint')
    with pytest.raises(CheckpointError, match="text.pth.* not a torch checkpoint: it is a text file"):
        read_checkpoint(tmp_path / 'text.pth')


def test_strict_errors_name_the_keys():
    model = MobileNetV2(widen_factor=0.5)
    state = model.state_dict()
    state.pop('conv2.bn.bias')
    state['extra.weight'] = torch.zeros(1)
    expected = r"1 missing and 1 unexpected keys; missing: conv2.bn.bias; unexpected: extra.weight"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(model, state)
    report = load_checkpoint(model, state, strict=False)
    assert (report.missing, report.unexpected) == (['conv2.bn.bias'], ['extra.weight'])
    state = model.state_dict()
    state['conv1.conv.weight'] = torch.zeros(1, 3, 3, 3)
    with pytest.raises(CheckpointError, match=r'conv1.conv.weight: checkpoint \(1, 3, 3, 3\) vs model'):
        load_checkpoint(model, state, strict=False)
    with pytest.raises(CheckpointError, match="prefix 'head.'"):
        load_checkpoint(model, {'backbone.conv1.conv.weight': torch.zeros(1), 'neck.x': torch.zeros(1)},
                        prefix='head.')


@needs_weights
def test_convert_tool_round_trip(tmp_path, rle_original, capsys):
    convert_main([str(RLE_WEIGHTS), str(tmp_path / 'mm.pth'), '--to', 'mmpose'])
    mm = read_checkpoint(tmp_path / 'mm.pth')
    assert detect_format(mm) == 'mmpose' and 'head.fc.weight' in mm['state_dict']
    convert_main([str(tmp_path / 'mm.pth'), str(tmp_path / 'ours.pth'), '--to', 'ours'])
    assert detect_format(read_checkpoint(tmp_path / 'ours.pth')) == 'ours'
    convert_main([str(tmp_path / 'ours.pth'), str(tmp_path / 'orig.pth'), '--to', 'original'])
    _assert_same(read_checkpoint(tmp_path / 'orig.pth'), rle_original)
    assert 'format mmpose' in capsys.readouterr().out


def test_training_input_size_from_the_metadata():
    from models.checkpoints.weights import trained_input_size

    assert trained_input_size({'meta': {'input_size': [192, 256]}, 'state_dict': {}}) == (192, 256)
    mmengine_text = ("default_scope = 'mmpose'\ncodec = dict(\n    input_size=(\n        192,\n        256,\n"
                     "    ),\n    type='RegressionLabel')\nmodel = dict(head=dict(decoder=codec))\n")
    assert trained_input_size({'meta': {'cfg': mmengine_text}}) == (192, 256)  # an MMPose/mmengine file
    ours = "codec = {'type': 'SimCCLabel', 'input_size': (288, 384), 'sigma': (6.0, 6.93)}\n"
    assert trained_input_size({'meta': {'config': ours}}) == (288, 384)  # ours, before meta['input_size']
    for meta in ({}, {'config': 'codec = make_codec()'}, {'config': 'not python ('}, {'input_size': 'big'}):
        assert trained_input_size({'meta': meta}) is None
    assert trained_input_size({'w': torch.zeros(1)}) is None


def test_training_input_size_from_the_file_name():
    from models.checkpoints.weights import named_input_size

    mmpose = 'td-reg_mobilenetv2_rle-pretrained-8xb64-210e_coco-256x192-39b73bd5_20220922.pth'
    assert named_input_size(mmpose) == (192, 256)  # MMPose names height x width
    assert named_input_size('/w/rle_mbv2-0.5x_aic-coco-192x192_202403131203.pth') == (192, 192)
    for name in ('rtmdet_tiny_8xb32-300e_coco_20220902_112414-78e30dcc.pth', 'a_256x192_b_384x288.pth',
                 'last.pth', '1920x10800.pth'):
        assert named_input_size(name) is None


def test_non_finite_observers_are_not_damage(tmp_path):
    """QAT observers hold inf min/max until they see data; real weights may not."""
    state = {'conv.weight': torch.ones(2), 'act.activation_post_process.min_val': torch.tensor(float('inf')),
             'act.activation_post_process.max_val': torch.tensor(float('-inf')), 'n': torch.tensor(3)}
    save_checkpoint(tmp_path / 'qat.pth', {'state_dict': state})
    assert read_checkpoint(tmp_path / 'qat.pth')['state_dict'].keys() == state.keys()
    state['bn.running_var'] = torch.tensor([1.0, float('inf')])
    with pytest.raises(CheckpointError, match=r'state dict: 1 tensor holds NaN or inf values \(bn\.running'):
        load_checkpoint(nn.Linear(1, 1), state)  # an in-memory state dict is checked too
