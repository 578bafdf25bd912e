"""tools/model_info.py: parameter counts equal MMPose 1.3.2's for the six pose recipes; MACs cross-checked
against torch's FLOP counter (which counts 2 FLOPs per multiply-accumulate)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models import build_pose_estimator
from tools.model_info import model_info
from utils.config import Config
from utils.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
RLE_FLOW = 53784  # RealNVP parameters: live only in the RLE loss

EXPECTED = {
    'configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py': 774788,
    'configs/rle/rle_mbv2-0.75x_aic-coco-192x192.py': 1442532,
    'configs/rle/td-reg_mobilenetv2_rle-pretrained-8xb64-210e_coco-256x192.py': 2310980,
    'configs/simcc/simcc_mbv2-0.75x-wo-deconv_aic-coco-192x192.py': 1405617,
    'configs/simcc/simcc_mbv2-0.75x-wo-deconv_aic-coco-256x192.py': 1421105,
    'configs/simcc/simcc_mobilenetv2_wo-deconv-8xb64-210e_coco-256x192.py': 2289553,
}


@pytest.mark.slow
def test_cli_prints_one_json_line_and_macs_match_torch_flop_counter():
    cfg_path = 'configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py'
    proc = subprocess.run([sys.executable, 'tools/model_info.py', cfg_path], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    info = json.loads(lines[0])
    assert list(info) == ['params', 'backbone', 'neck', 'head', 'loss_only', 'flops', 'input_size']
    assert info['params'] == 774788
    model = build_pose_estimator(Config.fromfile(ROOT / cfg_path).model).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 192, 192))
    assert info['flops'] == counter.get_total_flops() // 2


CONFIGS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / 'configs').rglob('*.py')
                 if '_base_' not in p.parts)


def test_the_expected_counts_name_shipped_configs():
    assert set(EXPECTED) <= set(CONFIGS)


@pytest.mark.parametrize('cfg_path', CONFIGS)
def test_every_config(cfg_path):
    """Pose and detector configs alike: counts add up (MMPose's for the pose recipes in EXPECTED), the RLE
    flow counts apart, and MACs are those of a full-size input."""
    info = model_info(Config.fromfile(ROOT / cfg_path))
    assert info['params'] == info['backbone'] + info['neck'] + info['head'] > 0
    assert info['params'] == EXPECTED.get(cfg_path, info['params'])
    assert info['loss_only'] == (RLE_FLOW if '/rle/' in cfg_path else 0)
    assert info['flops'] > info['params']
    assert info['input_size'] == ([640, 640] if '/detection/' in cfg_path else
                                  list(Config.fromfile(ROOT / cfg_path).codec['input_size']))


def test_detector_counts_match_mmdetection_and_the_flop_counter():
    cfg = Config.fromfile(ROOT / 'configs/detection/rtmdet_tiny_8xb32-300e_coco.py')
    info = model_info(cfg)
    assert info['params'] == 4896168  # MMDetection 3.3.0's RTMDet-tiny
    with torch.device('meta'):
        model = MODELS.build(cfg.model).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, 3, 640, 640))
    assert info['flops'] == counter.get_total_flops() // 2
