"""deploy.ort_backend: the ONNX Runtime pose and detector wrappers predict what the PyTorch models predict
(same interface: uint8 crops + meta -> keypoints in image px; padded images + metas -> detections)."""
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

from deploy.export import export_detector, export_module, export_pose_model  # noqa: E402
from deploy.ort_backend import load_onnx_detector, load_onnx_pose_model  # noqa: E402
from tests.conftest import FLIP, REPO, build_small, crops, rle_cfg, simcc_cfg  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.registry import MODELS  # noqa: E402


def batch_meta(batch: int) -> dict:
    torch.manual_seed(2)
    return dict(input_size=torch.tensor([[64, 64]] * batch), bbox_center=torch.rand(batch, 2) * 300,
                bbox_scale=torch.rand(batch, 2) * 200 + 50, flip_indices=torch.tensor([FLIP] * batch))


@pytest.mark.parametrize('make_cfg', [rle_cfg, simcc_cfg])
def test_pose_predict_matches_pytorch_with_runtime_flip(tmp_path: Path, make_cfg) -> None:
    """Raw-output graph (float input): the wrapper normalises, flips and decodes with the config's head."""
    cfg = make_cfg()
    model = build_small(cfg)
    path, _, _ = export_pose_model(model, cfg, tmp_path / 'raw.onnx', dynamic_batch=True)
    ort_model = load_onnx_pose_model(path, cfg)
    x, meta = crops(3), batch_meta(3)
    expected, got = model.predict(x, meta), ort_model.predict(x, meta)
    np.testing.assert_allclose(got['keypoints'], expected['keypoints'], atol=1e-3)
    np.testing.assert_allclose(got['keypoint_scores'], expected['keypoint_scores'], atol=1e-5)
    assert ort_model.eval() is ort_model and ort_model.to('cpu') is ort_model and not ort_model.training


def test_fixed_batch_graph_runs_crop_by_crop_and_decoded_graph(tmp_path: Path) -> None:
    cfg = rle_cfg()
    cfg['model']['test_cfg']['flip_test'] = False
    model = build_small(cfg)
    path, _, _ = export_pose_model(model, cfg, tmp_path / 'dec.onnx', with_decode=True, with_preprocess=True)
    ort_model = load_onnx_pose_model(path, cfg)
    x, meta = crops(4), batch_meta(4)
    np.testing.assert_allclose(ort_model.predict(x, meta)['keypoints'], model.predict(x, meta)['keypoints'],
                               atol=1e-3)


def test_foreign_onnx_file_is_refused(tmp_path: Path) -> None:
    path = export_module(torch.nn.Conv2d(3, 4, 3), torch.zeros(1, 3, 8, 8), tmp_path / 'conv.onnx',
                         input_name='input', output_names=['out'])
    with pytest.raises(ValueError, match='not a pose model exported by deploy.export'):
        load_onnx_pose_model(path, rle_cfg())
    with pytest.raises(FileNotFoundError, match='missing.onnx'):
        load_onnx_pose_model(tmp_path / 'missing.onnx', rle_cfg())


def test_detector_predict_matches_pytorch(tmp_path: Path) -> None:
    cfg = load_config(REPO / 'configs' / 'detection' / 'rtmdet_tiny_8xb32-300e_coco.py')
    cfg.test_pipeline = [dict(type='Resize', scale=(128, 128), keep_ratio=True),
                         dict(type='Pad', size=(128, 128), pad_val=dict(img=(114, 114, 114)))]
    cfg.test_dataloader.dataset.pipeline = cfg.test_pipeline
    torch.manual_seed(0)
    detector = MODELS.build(cfg.model).eval()
    path, _, _ = export_detector(detector, cfg, tmp_path / 'det.onnx')
    ort_detector = load_onnx_detector(path, cfg)
    x = torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8)
    metas = [dict(img_shape=(128, 128), scale_factor=(0.5, 0.5))] * 2
    expected, got = detector.predict(x, metas), ort_detector.predict(x, metas)
    for e, g in zip(expected, got):
        assert len(g['bboxes']) == len(e['bboxes']) > 0
        torch.testing.assert_close(g['bboxes'], e['bboxes'], atol=1e-3, rtol=1e-5)
        torch.testing.assert_close(g['scores'], e['scores'], atol=1e-5, rtol=1e-5)
        assert torch.equal(g['labels'], e['labels'])


def test_decoded_regression_graph_flips_at_run_time(tmp_path: Path) -> None:
    """A decoded RLE graph exported without the flip: ONNX Runtime runs it on the mirrored crops too and
    merges the decoded keypoints / scores exactly as the in-graph (and PyTorch) flip test does."""
    cfg = rle_cfg()
    model = build_small(cfg)
    path, _, _ = export_pose_model(model, cfg, tmp_path / 'dec.onnx', with_decode=True, dynamic_batch=True)
    ort_model = load_onnx_pose_model(path, cfg)
    assert ort_model.flip_test and ort_model.runtime_flip and not ort_model.is_quantized
    x, meta = crops(3), batch_meta(3)
    expected, got = model.predict(x, meta), ort_model.predict(x, meta)
    np.testing.assert_allclose(got['keypoints'], expected['keypoints'], atol=1e-3)
    np.testing.assert_allclose(got['keypoint_scores'], expected['keypoint_scores'], atol=1e-5)


def test_decoded_simcc_graph_without_flip_warns(tmp_path: Path) -> None:
    cfg = simcc_cfg()
    path, _, _ = export_pose_model(build_small(cfg), cfg, tmp_path / 'dec.onnx', with_decode=True)
    with pytest.warns(UserWarning, match='decoded SimCCLabel graph exported without the flip test'):
        ort_model = load_onnx_pose_model(path, cfg)
    assert not ort_model.flip_test
