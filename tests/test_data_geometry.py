"""structures.bbox / structures.keypoint against MMPose 1.3.2 reference values."""
from __future__ import annotations

import numpy as np
import pytest

from structures.bbox import (
    bbox_cs2xyxy,
    bbox_xywh2cs,
    bbox_xywh2xyxy,
    bbox_xyxy2cs,
    bbox_xyxy2xywh,
    fix_aspect_ratio,
    flip_bbox,
    get_udp_warp_matrix,
    get_warp_matrix,
    invert_affine,
)
from structures.keypoint import flip_keypoints

C, S = np.array([320.0, 240.0]), np.array([200.0, 300.0])


def test_warp_matrices_match_mmpose():
    # mmpose.structures.bbox.get_warp_matrix / get_udp_warp_matrix outputs for these arguments.
    np.testing.assert_allclose(get_warp_matrix(C, S, 25.0, (192, 256), shift=(0.1, -0.05), inv=True),
                               [[0.94407, -0.44023, 305.71832], [0.44023, 0.94407, 61.89713]], atol=2e-3)
    np.testing.assert_allclose(get_warp_matrix(C, S, -40.0, (192, 256), fix_aspect_ratio=False),
                               [[0.7354, -0.61708, 8.76939], [0.54851, 0.65369, -204.40976]], atol=2e-3)
    np.testing.assert_allclose(get_udp_warp_matrix(C, S, 15.0, (192, 256)),
                               [[0.92246, -0.24717, -140.3656], [0.22, 0.82104, -139.94765]], atol=1e-3)


def test_warp_maps_box_centre_to_output_centre_and_inverts():
    mat = get_warp_matrix(C, S, 30.0, (192, 256))
    np.testing.assert_allclose(mat[:, :2] @ C + mat[:, 2], [96, 128], atol=1e-3)
    back = invert_affine(mat)
    np.testing.assert_allclose(back[:, :2] @ [96, 128] + back[:, 2], C, atol=1e-3)
    np.testing.assert_allclose(get_warp_matrix(C, S, 30.0, (192, 256), inv=True), back, atol=1e-3)


def test_box_conversions():
    center, scale = bbox_xywh2cs(np.array([10.0, 20.0, 100.0, 50.0]), padding=1.25)  # MMPose values
    np.testing.assert_allclose(center, [60, 45])
    np.testing.assert_allclose(scale, [125, 62.5])
    np.testing.assert_allclose(bbox_cs2xyxy(center, scale, padding=1.25), [10, 20, 110, 70])
    xyxy = np.array([[1.0, 2.0, 11.0, 22.0, 0.9]])
    np.testing.assert_allclose(bbox_xywh2xyxy(bbox_xyxy2xywh(xyxy)), xyxy)
    c, s = bbox_xyxy2cs(xyxy[:, :4])
    assert c.shape == (1, 2) and s.tolist() == [[10, 20]]
    np.testing.assert_allclose(fix_aspect_ratio(np.array([[10.0, 40.0], [90.0, 30.0]]), 0.75),
                               [[30, 40], [90, 120]])


@pytest.mark.parametrize('direction', ['horizontal', 'vertical', 'diagonal'])
def test_flips_are_involutions(direction):
    box = np.array([[10.0, 20.0, 50.0, 80.0]])
    twice = flip_bbox(flip_bbox(box, (640, 480), 'xyxy', direction), (640, 480), 'xyxy', direction)
    np.testing.assert_allclose(twice, box)
    kpts = np.random.default_rng(0).uniform(0, 400, (1, 4, 2))
    vis = np.array([[1.0, 0.0, 1.0, 0.0]])
    f, fv = flip_keypoints(kpts, vis, (640, 480), [1, 0, 3, 2], direction)
    ff, ffv = flip_keypoints(f, fv, (640, 480), [1, 0, 3, 2], direction)
    np.testing.assert_allclose(ff, kpts)
    np.testing.assert_array_equal(ffv, vis)
    with pytest.raises(ValueError, match='direction'):
        flip_keypoints(kpts, vis, (640, 480), [1, 0, 3, 2], 'sideways')
