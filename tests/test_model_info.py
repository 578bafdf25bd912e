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


@pytest.mark.parametrize('cfg_path, params', EXPECTED.items())
def test_param_counts(cfg_path, params):
    info = model_info(Config.fromfile(ROOT / cfg_path))
    assert info['params'] == params
    assert info['backbone'] + info['neck'] + info['head'] == params
    assert info['loss_only'] == (RLE_FLOW if '/rle/' in cfg_path else 0)


def test_cli_prints_one_json_line_and_macs_match_torch_flop_counter():
    cfg_path = 'configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py'
    proc = subprocess.run([sys.executable, 'tools/model_info.py', cfg_path], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    info = json.loads(lines[0])
    assert list(info) == ['params', 'backbone', 'neck', 'head', 'loss_only', 'flops']
    assert info['params'] == 774788
    model = build_pose_estimator(Config.fromfile(ROOT / cfg_path).model).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 192, 192))
    assert info['flops'] == counter.get_total_flops() // 2
