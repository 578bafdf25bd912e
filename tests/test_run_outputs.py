"""What a training run leaves to look at: the quiet console, results.csv, scalars.json (MMPose's format),
results.png, prediction / train-batch mosaics in vis/; --resume appends; val.py --show-dir;
tools/plot_curves.py (PNG, PDF, SVG).
One 2-epoch training run on the 4-image COCO sample is shared by the tests of this module."""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import train
import val
from codec import MSRAHeatmap, RegressionLabel, SimCCLabel
from datasets import parse_pose_metainfo
from engine import RunRecord, RunReport, TrainWindow, read_results, read_scalars, summary_table
from tests.conftest import COCO_ANN, REPO, clear_project_logger, needs_data, tiny_config
from tools import plot_curves
from utils.cli import run_main
from utils.logger import get_logger, plural
from visualization.batch_picture import target_keypoints
from visualization.curves import PALETTE
from visualization.prediction_pictures import GT_COLOR, draw_predictions

EPOCHS, ITERS = 2, 3  # 12 sample instances, batch 4
COCO_META = parse_pose_metainfo(dict(from_file=str(REPO / 'configs/_base_/datasets/coco.py')))


def _train(cfg_file: Path, work_dir: Path, *extra: str) -> str:
    """train.main with the console captured; returns what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert train.main(['--cfg_file', str(cfg_file), '--work-dir', str(work_dir), '--device', 'cpu',
                           *extra]) == 0
    return out.getvalue()


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """(config, work dir, console text) of one 2-epoch run (tests marked needs_data); the work dir must not
    be modified."""
    tmp = tmp_path_factory.mktemp('run')
    cfg_file = tiny_config(tmp, 'rle', max_epochs=EPOCHS)
    console = _train(cfg_file, tmp / 'work', '--threads', '1')
    return cfg_file, tmp / 'work', console


def log_values(log: str, pattern: str) -> list[dict[str, float]]:
    """``name: number`` pairs of each log line matching ``pattern``."""
    lines = re.findall(pattern + r'.*', log)
    return [{k: float(v) for k, v in re.findall(r'([\w/]+(?: [.\w()]+)?): (-?[0-9.]+(?:e-?\d+)?)', line)}
            for line in lines]


@needs_data
@pytest.mark.slow
def test_console_is_short_and_config_only_in_files(run):
    cfg_file, work_dir, console = run
    lines = console.splitlines()
    assert len(lines) < 40, console
    assert 'device cpu, world size 1, 1 CPU thread (--threads)' in lines[0]  # the header says the threads
    assert 'train_dataloader = ' not in console and 'Python:' not in console  # config and env: files only
    assert any(line.endswith(f'data: train 12 instances, {ITERS} iterations/epoch (batch 4), val 12 '
                             f'instances; {EPOCHS} epochs') for line in lines)
    assert re.search(r'model: TopdownPoseEstimator, [\d,]+ parameters \(\+53,784 in the loss\)', console)
    assert len(re.findall(r'Epoch\(train\)', console)) == EPOCHS * ITERS  # off a terminal: every log_interval
    assert len(re.findall(r'Epoch\(val\)', console)) == EPOCHS
    assert 'best coco/AP: epoch' in console  # the summary table
    log = (work_dir / 'train.log').read_text()
    assert 'train_dataloader = ' in log and 'PyTorch: ' in log
    assert (work_dir / cfg_file.name).is_file()


@needs_data
@pytest.mark.slow
def test_results_csv_has_a_row_per_epoch_equal_to_the_log(run):
    _, work_dir, _ = run
    rows = read_results(work_dir / 'results.csv')
    assert [r['epoch'] for r in rows] == list(range(1, EPOCHS + 1))
    log = (work_dir / 'train.log').read_text()
    vals = log_values(log, r'Epoch\(val\) \[\d+\]')
    assert len(vals) == EPOCHS
    for row, logged in zip(rows, vals):
        assert {k for k in row if k.startswith('coco/')} == set(logged)
        for k, v in logged.items():
            assert row[k] == pytest.approx(v, abs=5e-5)  # the log rounds to 4 decimals; the csv does not
    for e, row in enumerate(rows, start=1):
        trains = log_values(log, rf'Epoch\(train\) \[{e}\]\[')
        assert len(trains) == ITERS
        for k in ('loss', 'loss_kpt', 'acc_pose', 'grad_norm'):
            assert row[k] == pytest.approx(np.mean([t[k] for t in trains]), abs=1e-3)
        assert row['lr'] == pytest.approx(trains[-1]['lr'], rel=1e-3)
        assert row['time'] > 0
    header = (work_dir / 'results.csv').read_text().splitlines()[0].split(',')
    assert header[0] == 'epoch' and header[-1] == 'time' and 'coco/AP' in header


def load_json_log(path: Path) -> dict:
    """What MMPose 1.3.2's tools/analysis_tools/analyze_logs.py ``load_json_logs`` builds: lines with an
    ``epoch`` field, as {epoch: {key: [values]}} (lines without one are skipped)."""
    log_dict: dict = {}
    for line in path.read_text().splitlines():
        record = json.loads(line.strip())
        if 'epoch' not in record:
            continue
        epoch = record.pop('epoch')
        log_dict.setdefault(epoch, defaultdict(list))
        for k, v in record.items():
            log_dict[epoch][k].append(v)
    return log_dict


@needs_data
@pytest.mark.slow
def test_scalars_json_is_mmpose_format(run):
    _, work_dir, _ = run
    path = work_dir / 'scalars.json'
    log_dict = load_json_log(path)
    assert list(log_dict) == list(range(1, EPOCHS + 1))
    for epoch, values in log_dict.items():  # plot_curve plots values[key] over values['step']
        assert values['step'] == values['iter'] == list(range((epoch - 1) * ITERS + 1, epoch * ITERS + 1))
        for key in ('lr', 'data_time', 'time', 'loss', 'loss_kpt', 'grad_norm'):
            assert len(values[key]) == ITERS and all(isinstance(v, float) for v in values[key])
    records = read_scalars(path)
    val_lines = [r for r in records if 'epoch' not in r]  # mmengine: metrics, time, step = epoch
    assert [r['step'] for r in val_lines] == list(range(1, EPOCHS + 1))
    rows = read_results(work_dir / 'results.csv')
    for r, row in zip(val_lines, rows):
        assert r['coco/AP'] == row['coco/AP'] and r['time'] > 0  # full precision in both files


def _not_blank(img: np.ndarray) -> None:
    assert img is not None and img.std() > 10 and len(np.unique(img.reshape(-1, 3), axis=0)) > 100


def _bgr(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (5, 3, 1))


def _tensorboard_images(work_dir: Path) -> dict[str, list[int]]:
    """Steps of each image tag in the run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(work_dir / 'tensorboard'), size_guidance={'images': 0})
    events.Reload()
    return {tag: [image.step for image in events.Images(tag)] for tag in events.Tags()['images']}


@needs_data
@pytest.mark.slow
def test_pictures_have_the_expected_size_and_place(run):
    _, work_dir, _ = run
    curves = cv2.imread(str(work_dir / 'results.png'))
    assert curves.shape == (2 * 280, 2 * 400, 3)  # loss, lr, coco/AP, coco/AR; 2 per row
    _not_blank(curves)
    assert sorted(p.name for p in (work_dir / 'vis').iterdir()) == [
        'train_batch.jpg', 'val_pred_best.jpg', 'val_pred_last.jpg']
    assert not list(work_dir.glob('*.jpg'))  # no picture per epoch piles up in the work dir
    for name in ('val_pred_last.jpg', 'val_pred_best.jpg'):
        mosaic = cv2.imread(str(work_dir / 'vis' / name))
        assert mosaic.shape == (360, 4 * 480, 3)  # the sample's 4 images, one row of 480x360 tiles
        _not_blank(mosaic)
        near_gt = (np.abs(mosaic.astype(int) - GT_COLOR).sum(-1) < 120).sum()
        assert near_gt > 200  # the ground truth is drawn
    batch = cv2.imread(str(work_dir / 'vis' / 'train_batch.jpg'))
    assert batch.shape == (192, 4 * 192, 3)  # batch 4 of 192x192 crops
    _not_blank(batch)
    images = _tensorboard_images(work_dir)
    assert images['val/predictions'] == list(range(1, EPOCHS + 1))  # every validation's mosaic
    assert images['train/batch'] == [1]


@needs_data
@pytest.mark.slow
def test_resume_appends(run, tmp_path):
    cfg_file, work_dir, _ = run
    resumed = tmp_path / 'work'
    shutil.copytree(work_dir, resumed)
    before = read_results(resumed / 'results.csv')
    console = _train(cfg_file, resumed, '--resume', '--cfg-options', f'train_cfg.max_epochs={EPOCHS + 1}')
    rows = read_results(resumed / 'results.csv')
    assert [r['epoch'] for r in rows] == list(range(1, EPOCHS + 2)) and rows[:EPOCHS] == before
    records = read_scalars(resumed / 'scalars.json')
    assert [r['step'] for r in records if 'epoch' in r] == list(range(1, (EPOCHS + 1) * ITERS + 1))
    assert [r['step'] for r in records if 'epoch' not in r] == list(range(1, EPOCHS + 2))
    assert _tensorboard_images(resumed)['val/predictions'] == list(range(1, EPOCHS + 2))
    assert not list(resumed.glob('*.jpg'))
    assert len(re.findall(r'^ *\d+\*? ', console, re.M)) >= EPOCHS + 1  # the table covers the whole run

    out = tmp_path / 'curves.png'  # plot_curves: both runs on one picture
    assert plot_curves.main([str(work_dir), str(resumed), '--keys', 'loss', 'coco/AP', 'grad_norm',
                             '--out', str(out)]) == 0
    img = cv2.imread(str(out))
    assert img.shape == (280, 3 * 400, 3)
    for color in PALETTE[:2]:  # one curve colour per run
        assert (np.abs(img.astype(int) - _bgr(color)).sum(-1) < 30).sum() > 50
    for suffix, start in (('.pdf', b'%PDF-'), ('.svg', b'<?xml')):  # vector formats by the extension
        out = tmp_path / f'curves{suffix}'
        assert plot_curves.main([str(work_dir), '--keys', 'loss', '--legend', 'A', '--out', str(out)]) == 0
        assert out.read_bytes().startswith(start)
    assert b'<svg' in out.read_bytes()


@needs_data
@pytest.mark.slow
def test_plot_curves_names_a_missing_key(run, tmp_path, capsys):
    _, work_dir, _ = run
    with pytest.raises(SystemExit) as exit_info:
        run_main(plot_curves.main, [str(work_dir), '--keys', 'coco/APX', '--out', str(tmp_path / 'x.png')])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no 'coco/APX'" in err and 'coco/AP' in err and not (tmp_path / 'x.png').exists()


@needs_data
@pytest.mark.slow
def test_val_show_dir_writes_one_picture_per_image(run, tmp_path, monkeypatch):
    _, work_dir, _ = run
    monkeypatch.chdir(REPO)
    show = tmp_path / 'show'
    with contextlib.redirect_stdout(io.StringIO()):
        val.main(['--checkpoint', str(work_dir), '--device', 'cpu', '--show-dir', str(show)])
    images = json.loads(COCO_ANN.read_text())['images']
    assert sorted(p.name for p in show.iterdir()) == sorted(img['file_name'] for img in images)
    for img in images:
        pic = cv2.imread(str(show / img['file_name']))
        assert pic.shape == (img['height'], img['width'], 3)
        _not_blank(pic)


def test_draw_predictions_puts_gt_and_prediction_colours():
    img = np.zeros((100, 200, 3), np.uint8)
    kpts = np.stack([np.linspace(10, 190, 17), np.full(17, 50.0)], axis=1)
    gt = [{'keypoints': kpts + [0, 30], 'keypoint_scores': np.full(17, 2.0)}]
    pred = [{'keypoints': kpts, 'keypoint_scores': np.r_[np.full(16, 0.9), 0.1]}]
    out = draw_predictions(img, pred, gt, COCO_META, tile=(100, 50))  # shrunk by 2 to fit the tile
    assert out.shape == (50, 100, 3)
    x, y = (int(round(v / 2)) for v in kpts[5])
    np.testing.assert_array_equal(out[y, x], COCO_META['keypoint_colors'][5][::-1])  # RGB -> BGR
    x16, y16 = (int(round(v / 2)) for v in kpts[16])
    assert not out[y16, x16].any()  # below the score threshold: not drawn
    ring = out[int(round(80 / 2)) - 4:int(round(80 / 2)) + 5, x - 4:x + 5]
    assert (np.abs(ring.astype(int) - GT_COLOR).sum(-1) < 60).any()  # ground truth in its own colour


@pytest.mark.parametrize('codec', [RegressionLabel((192, 256)), SimCCLabel((192, 256), sigma=6.0),
                                   MSRAHeatmap((192, 256), (48, 64), sigma=2)])
def test_target_keypoints_reads_back_what_the_codec_encoded(codec):
    rng = np.random.default_rng(0)
    kpts = rng.uniform([10, 10], [180, 240], size=(1, 17, 2)).astype(np.float32)
    visible = np.ones((1, 17), np.float32)
    visible[0, 3] = 0
    enc = codec.encode(kpts, visible)
    targets = {k: torch.from_numpy(np.asarray(v)) for k, v in enc.items()}  # labels (1, K, ...): a batch of 1
    if 'heatmaps' in targets:
        targets['heatmaps'] = targets['heatmaps'][None]  # (K, h, w) per sample
    got, weights = target_keypoints(targets, (192, 256))
    assert got.shape == (1, 17, 2) and weights.shape == (1, 17)
    assert weights[0, 3] == 0 and weights[0, 0] > 0
    tol = 4.0 if 'heatmaps' in targets else 1.0  # a heatmap bin is 4 px
    np.testing.assert_allclose(got[0][weights[0] > 0], kpts[0][weights[0] > 0], atol=tol)


def test_run_record_resume_drops_later_epochs_and_summary_marks_best(tmp_path):
    rec = RunRecord(tmp_path)
    for e, ap in zip((1, 2, 3), (0.5, 0.7, 0.6)):
        rec.log_train({'lr': 0.1, 'loss': 1.0 / e, 'time': 0.5}, e, e * 2)
        rec.log_val({'coco/AP': ap}, e, 0.1)
        rec.add_epoch({'epoch': e, 'lr': 0.1, 'loss': 1.0 / e, 'coco/AP': ap, 'time': 2.0})
    again = RunRecord(tmp_path, resume_epoch=2)  # the run is resumed after epoch 2
    assert [r['epoch'] for r in again.rows] == [1, 2] == [r['epoch'] for r in read_results(again.csv_path)]
    assert [r['step'] for r in read_scalars(again.json_path)] == [2, 1, 4, 2]
    table = summary_table(read_results(tmp_path / 'results.csv'), 'coco/AP')
    assert re.search(r'^ +2\* ', table, re.M) and 'best coco/AP: epoch 2' in table
    assert '0.7000' in table and '0.6999' not in table
    assert RunRecord(tmp_path).rows == [] and read_results(tmp_path / 'results.csv') == []  # a new run


def test_run_report_on_a_terminal_keeps_iteration_lines_in_the_file(tmp_path, capsys):
    logger = get_logger(tmp_path / 'train.log')
    report = RunReport(logger, tmp_path, max_epochs=1, show_bar=True)
    batch = {'inputs': torch.zeros(2, 3, 8, 8, dtype=torch.uint8), 'meta': {'img_id': torch.tensor([1, 2])},
             'targets': {'keypoint_labels': torch.full((2, 17, 2), 0.5)}}
    report.begin_epoch(0, 3)
    losses = [3.0, 1.0, 8.0]
    for i in range(3):
        if i == 0:
            report.first_batch(batch, COCO_META, 0)
        report.iteration_done()
        if i in (1, 2):  # windows of 2 and 1 iterations
            window = losses[:2] if i == 1 else losses[2:]
            report.log_train(TrainWindow(0, i, 3, len(window), 0.01, {'loss_kpt': float(np.mean(window))},
                                         0.1, 0.01))
            assert 'loss ' in report.bar.postfix and 'lr 1.00e-02' in report.bar.postfix
            assert 'ETA ' in report.bar.postfix
    assert report.bar.n == 3
    report.end_training()
    logger.warning('a message above the bar')
    report.log_metrics({'coco/AP': 0.5}, 0, val_iters=2)
    report.end_epoch(0)
    report.close()
    printed = capsys.readouterr().out
    assert 'Epoch(train)' not in printed and 'Epoch 1/1' in printed  # the bar instead of iteration lines
    assert 'WARNING: a message above the bar' in printed and 'Epoch(val) [1]  coco/AP: 0.5000' in printed
    assert (tmp_path / 'train.log').read_text().count('Epoch(train) [1]') == 2
    (row,) = read_results(tmp_path / 'results.csv')
    assert row['loss_kpt'] == pytest.approx(4.0) and row['coco/AP'] == 0.5  # the mean over all 3 iterations
    assert cv2.imread(str(tmp_path / 'vis' / 'train_batch.jpg')).shape == (8, 2 * 8, 3)
    assert (tmp_path / 'results.png').is_file()
    clear_project_logger()  # leave no handler on the captured stream


def test_run_report_keeps_the_last_and_the_best_prediction_mosaic(tmp_path):
    report = RunReport(get_logger(None), tmp_path, max_epochs=4)
    for epoch, best in enumerate((True, False, True, False)):
        report.log_predictions(np.full((16, 16, 3), 40 * (epoch + 1), np.uint8), epoch, best=best)
    report.log_predictions(None, 4, best=True)  # no mosaic (no CocoMetric): nothing changes
    report.close()
    assert sorted(p.name for p in (tmp_path / 'vis').iterdir()) == ['val_pred_best.jpg', 'val_pred_last.jpg']
    assert abs(int(cv2.imread(str(tmp_path / 'vis' / 'val_pred_last.jpg')).mean()) - 160) <= 2  # epoch 4
    assert abs(int(cv2.imread(str(tmp_path / 'vis' / 'val_pred_best.jpg')).mean()) - 120) <= 2  # epoch 3
    assert _tensorboard_images(tmp_path)['val/predictions'] == [1, 2, 3, 4]


def test_counts_in_messages_take_their_number():
    assert [plural(n, 'epoch') for n in (0, 1, 3)] == ['0 epochs', '1 epoch', '3 epochs']
