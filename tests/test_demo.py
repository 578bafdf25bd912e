"""topdown_demo_with_mmdet.py on an image, a folder and demo.mp4 (RTMDet-tiny with seeded weights saved in
MMDetection's layout + the real RLE-0.5x pose model), its outputs, and its messages for bad input."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import topdown_demo_with_mmdet as demo
from apis import select_boxes
from tests.conftest import COCO, REPO, RLE_WEIGHTS, RTMDET_TINY, VIDEO, needs_data, needs_weights

POSE_CFG = str(REPO / 'configs' / 'rle' / 'rle_mbv2-0.5x_aic-coco-192x192.py')
# the seeded detector scores its best person box 0.3166, the next ones below 0.3159
ONE_BOX_THR = '0.3162'


@pytest.fixture(scope='module')
def det_ckpt(seeded_rtmdet_tiny) -> str:
    return str(seeded_rtmdet_tiny)


def _run(det_ckpt: str | None, src: Path | str, out: Path, *extra: str) -> int:
    det = [str(RTMDET_TINY), det_ckpt] if det_ckpt else ['none', 'none']
    return demo.main([*det, POSE_CFG, str(RLE_WEIGHTS), '--input', str(src), '--output-root', str(out),
                      '--device', 'cpu', *extra])


def _check_instances(instances: list) -> None:
    for inst in instances:
        assert np.asarray(inst['keypoints']).shape == (17, 2)
        assert np.asarray(inst['keypoint_scores']).shape == (17,)
        assert np.asarray(inst['bbox']).shape == (1, 4)  # MMPose's demo nests the box
        assert 0 <= inst['bbox_score'] <= 1


@needs_data
@needs_weights
def test_image_with_detector(det_ckpt, tmp_path):
    src = COCO / '000000196141.jpg'
    assert _run(det_ckpt, src, tmp_path, '--save-predictions', '--draw-bbox', '--bbox-thr', ONE_BOX_THR) == 0
    drawn = cv2.imread(str(tmp_path / src.name))
    assert drawn.shape == cv2.imread(str(src)).shape
    pred = json.loads((tmp_path / 'results_000000196141.json').read_text())
    meta = pred['meta_info']
    assert meta['keypoint_id2name']['0'] == 'nose' and len(meta['skeleton_links']) == 19
    assert np.asarray(meta['skeleton_link_colors']).shape == (19, 3)
    assert len(pred['instance_info']) == 1
    _check_instances(pred['instance_info'])
    assert pred['instance_info'][0]['bbox_score'] == pytest.approx(0.31657, abs=1e-4)


@needs_data
@needs_weights
@pytest.mark.slow
def test_no_person_found_still_writes_outputs(det_ckpt, tmp_path):
    src = COCO / '000000040083.jpg'
    assert _run(det_ckpt, src, tmp_path, '--save-predictions', '--bbox-thr', '0.99') == 0
    assert (tmp_path / src.name).is_file()
    assert json.loads((tmp_path / 'results_000000040083.json').read_text())['instance_info'] == []


@needs_data
@needs_weights
def test_folder_skips_unreadable_images(tmp_path):
    folder = tmp_path / 'imgs'
    folder.mkdir()
    for name in ('000000196141.jpg', '000000197388.jpg'):
        shutil.copy(COCO / name, folder / name)
    (folder / 'broken.jpg').write_bytes(b'not a jpeg')
    with pytest.warns(UserWarning, match=r'skipping .*broken\.jpg'):
        assert _run(None, folder, tmp_path / 'out', '--save-predictions') == 0
    names = ['000000196141.jpg', '000000197388.jpg']
    assert sorted(p.name for p in (tmp_path / 'out').glob('*.jpg')) == names
    records = json.loads((tmp_path / 'out' / 'results_imgs.json').read_text())['instance_info']
    assert [r['img_path'] for r in records] == names
    for record in records:  # no detector: one box, the whole image
        assert len(record['instances']) == 1
        _check_instances(record['instances'])


@needs_data
@needs_weights
@pytest.mark.slow
def test_video_first_frames_with_det_interval(det_ckpt, tmp_path, capsys):
    # --kpt-thr 0: every keypoint counts when following a person into the next frame
    assert _run(det_ckpt, VIDEO, tmp_path, '--save-predictions', '--max-frames', '2', '--det-interval', '2',
                '--bbox-thr', ONE_BOX_THR, '--kpt-thr', '0') == 0
    report = capsys.readouterr().out
    assert re.search(r'2 frames in [\d.]+ s: [\d.]+ frames/s; per frame detection', report)
    assert 'detector ran on 1 frames' in report
    cap = cv2.VideoCapture(str(tmp_path / 'demo.mp4'))
    assert cap.isOpened() and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    cap.release()
    frames = json.loads((tmp_path / 'results_demo.json').read_text())['instance_info']
    assert [f['frame_id'] for f in frames] == [1, 2]
    assert len(frames[0]['instances']) == 1 and len(frames[1]['instances']) == 1  # followed, not re-detected
    for f in frames:
        _check_instances(f['instances'])


def test_boxes_from_keypoints_follow_confident_joints():
    inst = {'keypoints': np.array([[10, 20], [30, 60], [500, 500]], np.float32),
            'keypoint_scores': np.array([0.9, 0.8, 0.1], np.float32), 'bbox_score': 0.7}
    boxes, scores = demo.boxes_from_keypoints([inst], 0.3, (100, 200, 3), margin=0.25)
    np.testing.assert_allclose(boxes, [[5, 10, 35, 70]])
    assert scores.tolist() == [pytest.approx(0.7)]
    lone = dict(inst, keypoint_scores=np.array([0.9, 0.1, 0.1], np.float32))
    assert len(demo.boxes_from_keypoints([lone], 0.3, (100, 200, 3))[0]) == 0


def test_select_boxes_filters_class_score_and_overlaps():
    det = {'bboxes': np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32),
           'scores': np.array([0.9, 0.8, 0.6, 0.95], np.float32), 'labels': np.array([0, 0, 0, 3])}
    boxes, scores = select_boxes(det, cat_id=0, score_thr=0.5, nms_thr=0.3)
    assert scores.tolist() == pytest.approx([0.9, 0.6])
    np.testing.assert_array_equal(boxes, det['bboxes'][[0, 2]])


@needs_data
@needs_weights
def test_bad_inputs_give_messages(tmp_path):
    with pytest.raises(demo.DemoError, match='input not found: .*missing.jpg'):
        _run(None, tmp_path / 'missing.jpg', tmp_path / 'out')
    (tmp_path / 'broken.mp4').write_bytes(b'not a video')
    unreadable = r"(cannot open video|no frame could be read from) '.*broken\.mp4'"
    with pytest.raises(demo.DemoError, match=unreadable):
        _run(None, tmp_path / 'broken.mp4', tmp_path / 'out')
    (tmp_path / 'broken.png').write_bytes(b'')
    with pytest.raises(demo.DemoError, match=r'broken\.png'):
        _run(None, tmp_path / 'broken.png', tmp_path / 'out')
    with pytest.raises(demo.DemoError, match='would overwrite the inputs'):
        _run(None, tmp_path / 'broken.png', tmp_path)


@needs_weights
def test_webcam_without_a_camera_is_one_line(tmp_path, capfd):
    """OpenCV's own lines about the missing camera (written by native code to stderr) are not shown."""
    try:
        status = _run(None, 'webcam', tmp_path / 'out', '--max-frames', '1')
    except demo.DemoError as error:
        assert str(error) == ('cannot open camera 0 (--input webcam): none is connected, or another program '
                              'uses it')
    else:
        pytest.skip(f'this machine has a camera (the demo returned {status})')
    assert capfd.readouterr().err == ''
    assert not (tmp_path / 'out').exists()


@pytest.mark.slow
def test_command_line_error_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / 'topdown_demo_with_mmdet.py'), 'none', 'none', POSE_CFG,
                           'none', '--input', str(tmp_path / 'nothing.mp4'), '--output-root', str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f'error: input not found: {tmp_path / "nothing.mp4"}'


def test_no_openmmlab_imports_in_the_project():
    pattern = re.compile(r'^\s*(import|from)\s+(mmcv|mmdet|mmpose|mmengine)\b', re.MULTILINE)
    offenders = [str(p.relative_to(REPO)) for p in REPO.rglob('*.py')
                 if 'work_dirs' not in p.parts and pattern.search(p.read_text(encoding='utf-8'))]
    assert offenders == []
