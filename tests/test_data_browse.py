"""tools/browse_dataset.py writes augmented crops with the keypoints and skeleton drawn on them."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from datasets import parse_pose_metainfo
from tests.conftest import REPO, SAMPLE_CONFIG, needs_coco, sample_config_options
from tools.browse_dataset import draw_pose


def test_draw_pose_puts_metainfo_colours_on_keypoints():
    meta = parse_pose_metainfo(dict(from_file='configs/_base_/datasets/coco.py'))
    img = np.zeros((64, 64, 3), np.uint8)
    kpts = np.stack([np.linspace(5, 58, 17), np.linspace(5, 58, 17)], axis=1)
    visible = np.ones(17)
    visible[3] = 0
    kpts[3] = (60, 4)  # off the diagonal the drawn links follow
    out = draw_pose(img, kpts, visible, meta)
    for k in (0, 9, 16):
        x, y = (int(round(v)) for v in kpts[k])
        np.testing.assert_array_equal(out[y, x], meta['keypoint_colors'][k][::-1])  # RGB -> BGR
    x, y = (int(round(v)) for v in kpts[3])
    assert not np.array_equal(out[y, x], meta['keypoint_colors'][3][::-1])  # hidden joint not drawn
    assert (img == 0).all()  # input untouched


@needs_coco
@pytest.mark.slow
def test_browse_dataset_writes_crops(tmp_path):
    out = subprocess.run([sys.executable, 'tools/browse_dataset.py', str(SAMPLE_CONFIG), '--output-dir',
                          str(tmp_path), '--n', '3', '--cfg-options', *sample_config_options()], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    files = sorted(tmp_path.glob('*.jpg'))
    assert len(files) == 3
    crop = cv2.imread(str(files[0]))
    assert crop.shape == (192, 192, 3)
