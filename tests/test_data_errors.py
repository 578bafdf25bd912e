"""Inconsistent data through the real entry points (val.py, train.py, tools/eval_predictions.py): repeated
image or annotation ids, labelled keypoints without numeric coordinates and images resized after they
were annotated each end with exit status 2 and ONE short ``error: ...`` line naming the file and entry;
a metric ann_file that does not match the evaluated dataset is a warning naming both files and the
counts. The valid variants (``size_mismatch='rescale'``, null coordinates of unlabelled keypoints,
matching files) give the AP of the untouched data, and no run changes a pre-existing file.

The data are the 4-image COCO sample of the shared folder (copied, resized and edited here) with the published
RLE-0.5x weights; the module skips without them.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

import train
import val
from datasets import build_dataset
from datasets.batched import RawSampleDataset
from datasets.batched.recipe import dataset_recipes
from datasets.image_size import AnnotatedSize, ImageSizeError, check_image_size
from tests.conftest import (
    COCO,
    REPO,
    RLE_WEIGHTS,
    SAMPLE_CONFIG,
    UDP_BACKBONE,
    file_states,
    needs_coco,
    needs_weights,
    one_error_line,
    run_entry_point,
)
from tools import eval_predictions
from utils.cli import run_main
from utils.config import load_config

WEIGHTS = RLE_WEIGHTS
BASE_CFG = SAMPLE_CONFIG
pytestmark = [needs_coco, needs_weights]


@dataclass
class Data:
    root: Path
    cfg: str
    ann: Path  # a copy of test_coco.json
    coco: dict
    dump: Path  # val.py --dump of the untouched data
    ap: float  # val.py's AP on the untouched data (no flip test)


def _val(cfg: str, *options: str, extra: tuple = ()) -> list[str]:
    """val.py's arguments: the config, the published weights, CPU, ``--cfg-options options``."""
    return [str(a) for a in ['--cfg_file', cfg, '--checkpoint', WEIGHTS, '--device', 'cpu', *extra,
                             *(['--cfg-options', *options] if options else [])]]


def _save(folder: Path, name: str, img: np.ndarray, ext: str = '.jpg') -> None:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    (folder / name).write_bytes(buf.tobytes())  # PNG bytes under a .jpg name decode the same


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Data:
    root = tmp_path_factory.mktemp('data_errors')
    coco = json.loads((COCO / 'test_coco.json').read_text())
    (root / 'ann.json').write_text(json.dumps(coco))
    for folder in ('img', 'small', 'big'):
        (root / folder).mkdir()
    for image in coco['images']:
        name = image['file_name']
        (root / 'img' / name).write_bytes((COCO / name).read_bytes())
        img = cv2.imread(str(COCO / name))
        h, w = img.shape[:2]
        _save(root / 'small', name, cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA))
        # twice the size, each pixel repeated (lossless PNG): resizing it back gives the original pixels
        _save(root / 'big', name, cv2.resize(img, (2 * w, 2 * h), interpolation=cv2.INTER_NEAREST), '.png')
    cfg = root / 'cfg.py'
    cfg.write_text(
        f"_base_ = [{str(BASE_CFG)!r}]\n"
        f"data_root = {str(root) + '/'!r}\n"
        f"load_from = {str(RLE_WEIGHTS)!r}\n"  # the sample config's are relative to the repository
        "model = dict(test_cfg=dict(flip_test=False),\n"
        f"             backbone=dict(init_cfg=dict(checkpoint={str(UDP_BACKBONE)!r})))\n"
        "train_cfg = dict(max_epochs=1, val_interval=1)\n"
        "stage2_num_epochs = 0\n"
        "param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]\n"
        "train_dataloader = dict(batch_size=4, dataset=dict(datasets=[dict(type='CocoDataset', "
        "data_root=data_root, ann_file='ann.json', data_prefix=dict(img='img/'), pipeline=[])]))\n"
        "val_dataloader = dict(batch_size=16, dataset=dict(data_root=data_root, ann_file='ann.json', "
        "bbox_file=None, data_prefix=dict(img='img/')))\n"
        "test_dataloader = val_dataloader\n"
        "val_evaluator = dict(ann_file=data_root + 'ann.json')\n")
    dump = root / 'predictions.json'
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        metrics = val.main(_val(str(cfg), extra=('--dump', dump)))
    assert metrics['coco/AP'] > 0.5
    return Data(root, str(cfg), root / 'ann.json', coco, dump, metrics['coco/AP'])


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)  # the entry points run from the repository root, as in the README


@pytest.fixture
def unchanged(data):
    """Every file of the test data is byte-for-byte the same after the case."""
    before = file_states(data.root)
    yield
    after = file_states(data.root)
    assert not [str(p) for p, state in before.items() if after.get(p) != state]



def _edited(data: Data, path: Path, edit) -> Path:
    coco = copy.deepcopy(data.coco)
    edit(coco)
    path.write_text(json.dumps(coco))
    return path


def _labelled(ann: dict, labelled: bool = True) -> int:
    """Index of the first keypoint of ``ann`` that is (or is not) labelled."""
    return next(k for k in range(len(ann['keypoints']) // 3) if (ann['keypoints'][3 * k + 2] > 0) == labelled)


def _check_both_readers(data: Data, ann: Path, capsys, *needles: str) -> None:
    """The dataset (val.py) and the metric (tools/eval_predictions.py) refuse ``ann`` with the same line."""
    one_error_line(*run_entry_point(val.main, _val(data.cfg, f'val_dataloader.dataset.ann_file={ann}',
                                                   f'val_evaluator.ann_file={ann}'), capsys), *needles)
    one_error_line(*run_entry_point(eval_predictions.main, ['--ann-file', ann, '--predictions', data.dump],
                                    capsys), *needles)


# ------------------------------------------------------------------------------------------ repeated ids
def _merge_images(coco: dict) -> None:
    coco['images'][1]['id'] = coco['images'][0]['id']  # two files merged by hand: their ids collide


def _merge_annotations(coco: dict) -> None:
    coco['annotations'][3]['id'] = coco['annotations'][1]['id']
    coco['annotations'][5]['id'] = coco['annotations'][2]['id']


def test_repeated_image_ids(data, capsys, unchanged, tmp_path):
    ann = _edited(data, tmp_path / 'merged.json', _merge_images)
    first = data.coco['images'][0]['id']
    _check_both_readers(data, ann, capsys, rf'{re.escape(str(ann))}: 1 repeated image id in "images": '
                        rf'{first} \(images\[0\] and \[1\]\)', 'ids must be unique')


def test_repeated_annotation_ids(data, capsys, unchanged, tmp_path):
    ann = _edited(data, tmp_path / 'merged.json', _merge_annotations)
    ids = [data.coco['annotations'][i]['id'] for i in (1, 2)]
    _check_both_readers(data, ann, capsys, rf'merged\.json: 2 repeated annotation ids in "annotations": '
                        rf'{ids[0]} \(annotations\[1\] and \[3\]\), {ids[1]} \(annotations\[2\] and \[5\]\)')


# ------------------------------------------------------------------------------------------ keypoints
@pytest.mark.parametrize('value, shown', [(None, 'null'), ('12', '"12"')], ids=['null', 'string'])
def test_labelled_keypoint_without_numeric_coordinates(data, capsys, unchanged, tmp_path, value, shown):
    ann2 = data.coco['annotations'][2]
    k = _labelled(ann2)

    def edit(coco):
        coco['annotations'][2]['keypoints'][3 * k + 1] = value

    ann = _edited(data, tmp_path / 'kpts.json', edit)
    _check_both_readers(data, ann, capsys, rf'kpts\.json: annotations\[2\] \(id {ann2["id"]}\)',
                        rf'keypoint {k}\b', re.escape(shown))


def test_unlabelled_keypoints_may_be_null(data, capsys, unchanged, tmp_path):
    """x, y of unlabelled keypoints are not used: null there evaluates as the untouched file does."""
    def edit(coco):
        for ann in coco['annotations']:
            if any(v == 0 for v in ann['keypoints'][2::3]):
                k = _labelled(ann, labelled=False)
                ann['keypoints'][3 * k:3 * k + 2] = [None, None]

    ann = _edited(data, tmp_path / 'nulls.json', edit)
    metrics = val.main(_val(data.cfg, f'val_dataloader.dataset.ann_file={ann}',
                        f'val_evaluator.ann_file={ann}'))
    assert metrics['coco/AP'] == pytest.approx(data.ap, abs=1e-12)
    capsys.readouterr()
    assert eval_predictions.main(['--ann-file', str(ann), '--predictions', str(data.dump)]) == 0
    assert json.loads(capsys.readouterr().out)['coco/AP'] == pytest.approx(data.ap, abs=1e-12)


# ------------------------------------------------------------------------------------------ image size
def test_resized_images_in_validation(data, capsys, unchanged):
    """Raised in a loader worker (as with every real config), reported as the same one line."""
    name = data.coco['images'][0]['file_name']
    w, h = data.coco['images'][0]['width'], data.coco['images'][0]['height']
    opts = ('val_dataloader.dataset.data_prefix.img=small/', 'val_dataloader.num_workers=1')
    one_error_line(*run_entry_point(val.main, _val(data.cfg, *opts), capsys),
                   rf'image file .*small/{name} is {w // 2}x{h // 2} pixels but {re.escape(str(data.ann))} '
                   rf'gives width {w}, height {h}', "size_mismatch='rescale'")
    typo = _val(data.cfg, 'val_dataloader.dataset.size_mismatch=resize')
    one_error_line(*run_entry_point(val.main, typo, capsys),
                   r"CocoDataset: size_mismatch must be one of \('error', 'rescale'\), got 'resize'")


def test_resized_images_in_batched_training(data, capsys, unchanged, tmp_path, project_log):
    """The device pipeline's loader side (datasets/batched/host_sample.py) checks as LoadImage does."""
    argv = ['--cfg_file', data.cfg, '--device', 'cpu', '--input-pipeline', 'device', '--work-dir',
            tmp_path / 'work', '--cfg-options', 'train_dataloader.dataset.datasets.0.data_prefix.img=small/']
    with pytest.raises(SystemExit) as info:
        run_main(train.main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    one_error_line(info.value.code, err, r'image file .*small/\d+\.jpg is \d+x\d+ pixels but '
                   rf'{re.escape(str(data.ann))} gives width \d+, height \d+')
    assert 'Input pipeline: batched on cpu' in out
    assert not list((tmp_path / 'work').glob('*.pth'))


def test_rescale_gives_the_ap_of_the_unresized_images(data, unchanged, project_log):
    metrics = val.main(_val(data.cfg, 'val_dataloader.dataset.data_prefix.img=big/',
                            "val_dataloader.dataset.size_mismatch='rescale'"))
    assert metrics['coco/AP'] == pytest.approx(data.ap, abs=1e-9)
    logged = [r.getMessage() for r in project_log.records if 'differ in size' in r.getMessage()]
    assert logged == [f"{data.ann}: 4 of 4 images differ in size from its width/height; they are resized to "
                      "the annotated size when read (size_mismatch='rescale')"]


def test_rescale_in_the_batched_pipeline(data, unchanged):
    cfg = load_config(data.cfg, ['train_dataloader.dataset.datasets.0.data_prefix.img=big/'])
    ds_cfg = cfg.train_dataloader['dataset']
    recipes = dataset_recipes(ds_cfg)
    with pytest.raises(ImageSizeError, match=r'big/\d+\.jpg is \d+x\d+ pixels but .*ann\.json gives width'):
        RawSampleDataset(build_dataset(ds_cfg), recipes)[(0, 1)]
    ds_cfg['datasets'][0]['size_mismatch'] = 'rescale'
    raw = RawSampleDataset(build_dataset(ds_cfg), recipes)[(0, 1)]
    image = next(i for i in data.coco['images'] if raw['img_path'].endswith(i['file_name']))
    original = cv2.imread(str(data.root / 'img' / image['file_name']))
    assert raw['jpeg'] is None and raw['img_hw'] == (image['height'], image['width'])
    assert np.array_equal(raw['image'], original)


def test_image_size_rules(data):
    info = {'annotated_size': AnnotatedSize(425, 640, 'ann.json', 'rescale')}
    assert check_image_size({}, (10, 10), 'a.jpg') is None  # the json gives no size: nothing to check
    assert check_image_size(info, (425, 640), 'a.jpg') is None
    assert check_image_size(info, (212, 320), 'a.jpg') == (425, 640)
    with pytest.raises(ImageSizeError, match=r'a\.jpg is 425x640 pixels .* another aspect ratio'):
        check_image_size(info, (640, 425), 'a.jpg')  # rotated, not resized


def test_no_size_in_the_annotation_file_no_check(data, tmp_path):
    def edit(coco):
        for image in coco['images']:
            del image['width'], image['height']

    ann = _edited(data, tmp_path / 'no_size.json', edit)
    dataset = build_dataset(dict(type='CocoDataset', ann_file=str(ann), pipeline=[dict(type='LoadImage')],
                                 data_prefix=dict(img=str(data.root / 'small'))))
    sample = dataset[0]
    assert 'annotated_size' not in dataset.get_data_info(0)
    assert sample['img'].shape[:2] == cv2.imread(sample['img_path']).shape[:2]


# ------------------------------------------------------------------------------------------ metric file
def test_metric_file_of_another_image_set(data, capsys, unchanged, tmp_path, project_log):
    """A validation subset evaluated against the full file: a warning naming both files and the counts."""
    keep = {img['id'] for img in data.coco['images'][:2]}

    def subset(coco):
        coco['images'] = [i for i in coco['images'] if i['id'] in keep]
        coco['annotations'] = [a for a in coco['annotations'] if a['image_id'] in keep]

    sub = _edited(data, tmp_path / 'subset.json', subset)
    wrong = val.main(_val(data.cfg, f'val_dataloader.dataset.ann_file={sub}'))
    warned = [r.getMessage() for r in project_log.records if 'hold different images' in r.getMessage()]
    assert warned == [f"the metric's ann_file {data.ann} and the evaluated dataset's {sub} hold different "
                      "images: 2 of the metric's images with annotated people are not in the dataset (they "
                      "count as missed: AP comes out too low); give both the same annotation file"]
    project_log.clear()
    right = val.main(_val(data.cfg, f'val_dataloader.dataset.ann_file={sub}',
                           f'val_evaluator.ann_file={sub}'))
    assert not [r for r in project_log.records if 'hold different images' in r.getMessage()]
    assert wrong['coco/AP'] < right['coco/AP'] - 0.2
