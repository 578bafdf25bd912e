"""Common user mistakes across train.py, val.py, the demo, every tool and the config loader: each ends with
exit status 2 (1 for failures that are not the user's input) and ONE short ``error: ...`` line naming the
file / key / value, without a traceback, and leaves every pre-existing file as it was.

The entry points' ``main`` functions run in-process through the shared ``utils.cli.run_main`` (as their
``__main__`` blocks do); two cases run the real scripts in a subprocess. The data are tiny files made here
(random-pixel JPEGs and a COCO-format annotation file), so no case trains a model or needs ../shared.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import topdown_demo_with_mmdet as demo
import train
import val
from benchmarks import bench_inference
from models import build_pose_estimator
from models.checkpoints import save_checkpoint
from tests.conftest import file_states as _snapshot
from tests.conftest import one_error_line as one_error
from tests.conftest import run_entry_point as run
from tools import (
    browse_dataset,
    convert_checkpoint,
    eval_predictions,
    export_onnx,
    model_info,
    plot_curves,
    publish_model,
    quantize,
)
from utils.cli import run_main
from utils.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
BASE_CFG = REPO / 'configs' / 'rle' / 'rle_mbv2-0.5x_coco-sample-192x192.py'
DET_CFG = REPO / 'configs' / 'detection' / 'rtmdet_tiny_8xb32-300e_coco.py'


@dataclass
class Env:
    root: Path
    cfg: str
    ckpt: str
    ann: str
    img: Path
    truncated: Path
    raw: Path


def _annotations(num_images: int) -> dict:
    images, anns = [], []
    for i in range(num_images):
        images.append(dict(id=i + 1, file_name=f'{i}.jpg', height=240, width=320))
        for j in range(2):
            x, y = 20 + 150 * j, 20
            kpts = [v for k in range(17) for v in (x + 10 + (k % 4) * 25, y + 10 + k * 11, 2)]
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=1, bbox=[x, y, 120, 200],
                             area=120 * 200.0, iscrowd=0, num_keypoints=17, keypoints=kpts))
    return dict(images=images, annotations=anns, categories=[dict(id=1, name='person')])


@pytest.fixture(scope='module')
def env(tmp_path_factory) -> Env:
    root = tmp_path_factory.mktemp('user_errors')
    rng = np.random.default_rng(0)
    for folder in ('img', 'badimg'):
        (root / folder).mkdir()
        for i in range(2):
            ok, data = cv2.imencode('.jpg', rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
            assert ok
            (root / folder / f'{i}.jpg').write_bytes(data.tobytes())
    data = (root / 'badimg' / '1.jpg').read_bytes()
    (root / 'badimg' / '1.jpg').write_bytes(data[:len(data) // 2])  # a truncated JPEG
    (root / 'ann.json').write_text(json.dumps(_annotations(2)))
    cfg = root / 'tiny.py'
    cfg.write_text(
        f"_base_ = [{str(BASE_CFG)!r}]\n"
        f"data_root = {str(root) + '/'!r}\n"
        "load_from = None\n"
        "model = dict(backbone=dict(init_cfg=None), test_cfg=dict(flip_test=False))\n"
        "train_cfg = dict(max_epochs=1, val_interval=1)\n"
        "stage2_num_epochs = 0\n"
        "param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]\n"
        "train_dataloader = dict(batch_size=2, dataset=dict(datasets=[dict(type='CocoDataset', "
        "data_root=data_root, ann_file='ann.json', data_prefix=dict(img='img/'), pipeline=[])]))\n"
        "val_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root, ann_file='ann.json', "
        "bbox_file=None, data_prefix=dict(img='img/')))\n"
        "test_dataloader = val_dataloader\n"
        "val_evaluator = dict(ann_file=data_root + 'ann.json')\n")
    model = build_pose_estimator(load_config(cfg).model)
    save_checkpoint(root / 'model.pth', {'state_dict': model.state_dict()})
    insts = [dict(img_id=1, id=k + 1, keypoints=[[30.0 + i, 40.0 + 5 * i] for i in range(17)],
                  keypoint_scores=[0.9] * 17, bbox=[20, 20, 120, 200], bbox_score=1.0) for k in range(2)]
    (root / 'raw.json').write_text(json.dumps(insts))
    return Env(root, str(cfg), str(root / 'model.pth'), str(root / 'ann.json'), root / 'img' / '0.jpg',
               root / 'badimg' / '1.jpg', root / 'raw.json')


@pytest.fixture
def unchanged(env):
    """Every file that existed under the test data folder before the case is byte-for-byte the same after."""
    before = _snapshot(env.root)
    yield
    after = _snapshot(env.root)
    changed = [str(p) for p, state in before.items() if after.get(p) != state]
    assert not changed, f'pre-existing files changed or removed: {changed}'


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)  # configs import configs._base_ helpers relative to the repository root


# train.main points the project logger at each test's captured stdout: reset it afterwards
pytestmark = pytest.mark.usefixtures('fresh_project_logger')



def tiny(env: Env, *options: str) -> list[str]:
    return ['--cfg_file', env.cfg, '--device', 'cpu', *(['--cfg-options', *options] if options else [])]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------ configs
CONFIG_OPTION_CASES = [
    (['train_dataloader.batch_sise=2'], [r'train_dataloader has no key .batch_sise.', 'closest: batch_size',
                                         r'\+train_dataloader\.batch_sise=2']),
    (['train_cfg.max_epochs=two'], ['train_cfg.max_epochs expects int', "'two'"]),
    (['model.backbone.widen_factr=0.75'], ['closest: widen_factor']),
    (['optim_wrapper.optimizer.lr=[1]'], ['optim_wrapper.optimizer.lr expects a number']),
    (['model.test_cfg.flip_test=maybe'], ['flip_test expects bool']),
    (['no_equals_sign'], ['expects KEY=VALUE', 'no_equals_sign']),
    (['train_dataloader.dataset.datasets.5.ann_file=x.json'],
     [r"'5' is not an index into a list of length 1"]),
    (['train_dataloader.batch_size.x=1'], [r'train_dataloader\.batch_size is a int, not a dict']),
    (['model.head.type=RLEHaed'], [r"'RLEHaed' is not registered", 'Did you mean: RLEHead',
                                   r'config path: model\.head']),
    (['+model.head.num_joint=17'], ["unexpected keyword argument 'num_joint'", 'Did you mean: num_joints',
                                    r'config path: model\.head']),
    (['val_evaluator.type=CocoMetrik'], ['Did you mean: CocoMetric', 'config path: val_evaluator']),
]


@pytest.mark.parametrize('options, needles', CONFIG_OPTION_CASES, ids=[c[0][0] for c in CONFIG_OPTION_CASES])
def test_train_cfg_option_mistakes(env, capsys, unchanged, tmp_path, options, needles):
    one_error(*run(train.main, [*tiny(env, *options), '--work-dir', tmp_path / 'work'], capsys), *needles)


CONFIG_FILE_CASES = [
    ('syntax.py', 'a = 1\nb = dict(x=1\nc = 3\n', [r'syntax error in config file .*syntax\.py, line \d']),
    ('runtime.py', 'a = 1\nb = undefined_name + 1\n', [r'runtime\.py, line 2: NameError']),
    ('base.py', "_base_ = ['./no_such_base.py']\n", [r'no_such_base\.py \(named in _base_ of .*base\.py\)']),
    ('registry.py', "_base_ = ['{cfg}']\nmodel = dict(backbone=dict(type='MobileNetV3'))\n",
     [r"'MobileNetV3' is not registered in the model registry", r'config path: model\.backbone']),
    ('dataset.py', "_base_ = ['{cfg}']\nval_dataloader = dict(dataset=dict(type='CocoDatset'))\n",
     ['Did you mean: CocoDataset', r'config path: val_dataloader\.dataset']),
]


@pytest.mark.parametrize('name, text, needles', CONFIG_FILE_CASES, ids=[c[0] for c in CONFIG_FILE_CASES])
def test_config_file_mistakes(env, capsys, unchanged, tmp_path, name, text, needles):
    cfg = write(tmp_path / name, text.format(cfg=env.cfg))
    one_error(*run(val.main, ['--cfg_file', cfg, '--checkpoint', env.ckpt, '--device', 'cpu'], capsys),
              *needles)


def test_missing_config_file(env, capsys, unchanged):
    one_error(*run(model_info.main, [env.root / 'nope.py'], capsys), r'config file not found: .*nope\.py')


def test_cfg_options_new_key_form_and_delete(env):
    cfg = load_config(env.cfg, ['+custom.flag=True', "model.head=dict(_delete_=True, type='RLEHead', "
                                "in_channels=1280, num_joints=17)", 'data_root=2017'])
    assert cfg.custom.flag is True and cfg.data_root == '2017'
    assert dict(cfg.model.head) == {'type': 'RLEHead', 'in_channels': 1280, 'num_joints': 17}


# ------------------------------------------------------------------------------------------ training
TRAIN_SETTING_CASES = [
    (['train_cfg.max_epochs=0'], [r'train_cfg\.max_epochs = 0: must be a whole number of at least 1']),
    (['train_cfg.val_interval=5'], [r'train_cfg\.val_interval = 5 is past train_cfg\.max_epochs = 1']),
    (['train_dataloader.batch_size=0'], [r'train_dataloader\.batch_size = 0']),
    (['stage2_num_epochs=3'], [r'stage2_num_epochs = 3: .* train_cfg\.max_epochs = 1']),
    (['train_dataloader.batch_size=8', 'train_dataloader.drop_last=True'],
     [r'train_dataloader\.batch_size = 8 is larger than the 4 samples', 'drop_last']),
    (['train_dataloader.dataset.datasets.0.indices=[]'], [r'train_dataloader\.dataset has no samples']),
    (['train_dataloader.dataset.datasets.0.ann_file=missing.json'], [r"missing\.json' does not exist"]),
]


@pytest.mark.parametrize('options, needles', TRAIN_SETTING_CASES, ids=[c[0][0] for c in TRAIN_SETTING_CASES])
def test_train_settings_that_cannot_work(env, capsys, unchanged, tmp_path, options, needles):
    one_error(*run(train.main, [*tiny(env, *options), '--work-dir', tmp_path / 'work'], capsys), *needles)
    assert not list((tmp_path / 'work').glob('*.pth'))


def test_train_refuses_to_overwrite_an_earlier_run(env, capsys, tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'best.pth').write_bytes(b'a better best.pth')
    before = _snapshot(work)
    line = one_error(*run(train.main, [*tiny(env), '--work-dir', work], capsys), r'best\.pth', '--resume',
                     '--overwrite')
    assert str(work) in line and _snapshot(work) == before


def test_train_resume_checkpoint_missing(env, capsys, unchanged, tmp_path):
    one_error(*run(train.main, [*tiny(env), '--work-dir', tmp_path, '--resume', tmp_path / 'gone.pth'],
                   capsys), r'--resume .*gone\.pth: neither a checkpoint file nor a work dir')
    one_error(*run(train.main, [*tiny(env), '--resume', tmp_path], capsys),
              rf'--resume {re.escape(str(tmp_path))}: that work dir holds no last\.pth')
    save_checkpoint(tmp_path / 'weights.pth', {'state_dict': {'w': torch.zeros(1)}})
    one_error(*run(train.main, [*tiny(env), '--resume', tmp_path / 'weights.pth'], capsys),
              r'weights\.pth: not a training checkpoint of this project \(no optimizer, epoch, iter, best\)',
              r'--cfg-options load_from=.*weights\.pth')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['weights.pth']


# ------------------------------------------------------------------------------------------ data
def _ann_case(tmp_path: Path, content: str) -> Path:
    return write(tmp_path / 'ann.json', content)


ANNOTATION_CASES = [
    ('{"images": [], "annotations": [', [r'ann\.json is not valid JSON']),
    (json.dumps({**_annotations(2), 'annotations': []}), [r'ann\.json: "annotations" is empty']),
    (json.dumps({**_annotations(2), 'annotations': [dict(a, bbox=[a['bbox'][0], 0, 0, 0])
                                                    for a in _annotations(2)['annotations']]}),
     [r'none of its 4 person annotations is usable \(0 crowd, 4 with an empty or negative box']),
    (json.dumps({**_annotations(2), 'annotations': [dict(a, keypoints=a['keypoints'][:-3])
                                                    for a in _annotations(2)['annotations']]}),
     [r'annotations\[0\] \(id 1\) field "keypoints": expected 51 numbers']),
    (json.dumps({**_annotations(2),
                 'annotations': [dict(a, image_id=99) for a in _annotations(2)['annotations']]}),
     [r'annotations\[0\] \(id 1\) field "image_id"']),
]


@pytest.mark.parametrize('content, needles', ANNOTATION_CASES,
                         ids=['json', 'empty', 'boxes', 'kpts', 'img_id'])
def test_annotation_file_mistakes(env, capsys, unchanged, tmp_path, content, needles):
    ann = _ann_case(tmp_path, content)
    opts = [f'train_dataloader.dataset.datasets.0.ann_file={ann}', f'val_dataloader.dataset.ann_file={ann}']
    one_error(*run(browse_dataset.main, [env.cfg, '--output-dir', tmp_path / 'vis', '--cfg-options', *opts],
                   capsys), *needles)


def test_dropped_instances_counted_once(env, tmp_path, project_log):
    data = _annotations(2)
    data['annotations'][0]['bbox'] = [20, 20, 0, 50]
    data['annotations'][1]['iscrowd'] = 1
    ann = write(tmp_path / 'ann.json', json.dumps(data))
    from datasets import build_dataset
    dataset = build_dataset(dict(type='CocoDataset', ann_file=str(ann), data_prefix=dict(img=str(env.root))))
    assert len(dataset) == 2
    build_dataset(dict(type='CocoDataset', ann_file=str(ann), data_prefix=dict(img=str(env.root))))  # val's
    logged = [r.getMessage() for r in project_log.records if 'dropped' in r.getMessage()]
    assert logged == [f'{ann}: 2 of 4 annotations dropped (1 crowd, 1 with an empty or negative box)']


def test_truncated_jpeg_in_training_data(env, capsys, unchanged, tmp_path):
    opts = ['train_dataloader.dataset.datasets.0.data_prefix.img=badimg/', 'train_dataloader.batch_size=4']
    one_error(*run(train.main, [*tiny(env, *opts), '--work-dir', tmp_path / 'work'], capsys),
              rf'image file {re.escape(str(env.truncated))} is a truncated JPEG')
    assert not list((tmp_path / 'work').glob('*.pth'))


def test_truncated_jpeg_in_validation_data(env, capsys, unchanged):
    one_error(*run(val.main, [*tiny(env, 'val_dataloader.dataset.data_prefix.img=badimg/'), '--checkpoint',
                              env.ckpt], capsys), rf'{re.escape(str(env.truncated))} is a truncated JPEG')


def test_truncated_jpeg_in_browse_dataset(env, capsys, unchanged, tmp_path):
    opts = ['--phase', 'val', '--cfg-options', 'val_dataloader.dataset.data_prefix.img=badimg/']
    one_error(*run(browse_dataset.main, [env.cfg, '--output-dir', tmp_path / 'vis', *opts], capsys),
              rf'{re.escape(str(env.truncated))} is a truncated JPEG')


def test_truncated_jpeg_skipped_with_skip_bad_images(env, capsys, unchanged, tmp_path, project_log):
    opts = ['--phase', 'train', '--n', '4', '--cfg-options',
            'train_dataloader.dataset.datasets.0.data_prefix.img=badimg/',
            'train_dataloader.dataset.skip_bad_images=True']
    status, err = run(browse_dataset.main, [env.cfg, '--output-dir', tmp_path / 'vis', *opts], capsys)
    assert status == 0 and 'error' not in err
    skips = [r.getMessage() for r in project_log.records if 'skip_bad_images' in r.getMessage()]
    assert len(skips) == 2 and all(str(env.truncated) in m and 'truncated JPEG' in m for m in skips)
    assert len(list((tmp_path / 'vis').glob('*.jpg'))) == 2  # the two people of the good image


# ------------------------------------------------------------------------------------------ checkpoints
@pytest.fixture(scope='module')
def bad_checkpoints(env) -> dict[str, Path]:
    folder = env.root / 'ckpts'
    folder.mkdir()
    files = {
        'text': write(folder / 'text.pth', '116\n'),
        'html': write(folder / 'html.pth', '<!DOCTYPE html>\n<html><body>Not Found</body></html>\n'),
        'lfs': write(folder / 'lfs.pth',
                     'version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n'),
        'empty': write(folder / 'empty.pth', ''),
    }
    wide = build_pose_estimator(load_config(env.cfg, ['model.backbone.widen_factor=0.75']).model)
    save_checkpoint(folder / 'wide.pth', {'state_dict': wide.state_dict()})
    files['wide'] = folder / 'wide.pth'
    torch.save({'state_dict': {'layer.weight': torch.zeros(2)}}, folder / 'other.pth')
    files['other'] = folder / 'other.pth'
    return files


CHECKPOINT_CASES = [
    ('text', [r"text\.pth' is not a torch checkpoint: it is a text file \(starting '116'\)"]),
    ('html', [r'html\.pth.* an HTML/XML page']),
    ('lfs', [r'lfs\.pth.* a git-LFS pointer file.*git lfs pull']),
    ('empty', [r'empty\.pth.* an empty file']),
    ('wide', [r'CHECKPOINT .*wide\.pth: tensor shapes differ from the model',
              r'conv1\.conv\.weight: checkpoint \(24, 3, 3, 3\) vs model \(16, 3, 3, 3\) and \d+ more',
              'widen_factor']),
    ('other', [r'other\.pth.* another architecture: only 0 of the model\'s \d+ tensors']),
]


@pytest.mark.parametrize('kind, needles', CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES])
def test_val_checkpoint_mistakes(env, bad_checkpoints, capsys, unchanged, kind, needles):
    one_error(*run(val.main, [*tiny(env), '--checkpoint', bad_checkpoints[kind]], capsys), *needles)


def test_train_load_from_text_file(env, bad_checkpoints, capsys, unchanged, tmp_path):
    one_error(*run(train.main, [*tiny(env, f"load_from='{bad_checkpoints['lfs']}'"), '--work-dir', tmp_path],
                   capsys), 'git-LFS pointer')


def test_val_mistakes(env, capsys, unchanged, tmp_path):
    one_error(*run(val.main, [*tiny(env), '--checkpoint', tmp_path / 'none.pth'], capsys),
              r'checkpoint file not found: .*none\.pth')
    one_error(*run(val.main, ['--checkpoint', env.ckpt], capsys), r'--cfg_file\) is required')
    one_error(*run(val.main, ['--checkpoint', tmp_path], capsys), 'holds neither best.pth nor last.pth')
    one_error(*run(val.main, [*tiny(env), '--checkpoint', env.ckpt, '--dump', env.ckpt], capsys),
              r"argument --dump: .*model\.pth: unsupported extension '\.pth'; expected \.json")
    one_error(*run(val.main, [*tiny(env), '--checkpoint', env.ckpt, '--dump', env.ann], capsys),
              r"--dump .*ann\.json' is the input val_dataloader\.dataset\.ann_file")
    one_error(*run(val.main, [*tiny(env), '--checkpoint', env.ckpt, '--out', env.ann], capsys),
              r"--out .*ann\.json' is the input val_dataloader\.dataset\.ann_file")
    one_error(*run(val.main, [*tiny(env, f'val_dataloader.dataset.bbox_file={tmp_path}/dets.json'),
                              '--checkpoint', env.ckpt], capsys), r'bbox file not found: .*dets\.json')


# ------------------------------------------------------------------------------------------ weights
def _model(env: Env, *options: str) -> torch.nn.Module:
    return build_pose_estimator(load_config(env.cfg, list(options)).model)


def test_non_finite_weights_are_refused_by_name(env, capsys, unchanged, tmp_path):
    state = _model(env).half().state_dict()  # float16 BatchNorm statistics that overflowed
    bad = [k for k in state if k.endswith('running_var')][:4] + ['head.fc_coord.weight']
    for key in bad:
        state[key].view(-1)[0] = float('inf') if 'running' in key else float('nan')
    torch.save({'state_dict': state}, tmp_path / 'half.pth')
    first = ', '.join(re.escape(k) for k in bad[:3])
    one_error(*run(val.main, [*tiny(env), '--checkpoint', tmp_path / 'half.pth'], capsys),
              rf"CHECKPOINT: '.*half\.pth': 5 tensors hold NaN or inf values \({first} \(\+2 more\)\)",
              'float16')
    one_error(*run(train.main, [*tiny(env, f"load_from='{tmp_path / 'half.pth'}'"), '--work-dir',
                                tmp_path / 'work'], capsys), r"load_from: '.*half\.pth': 5 tensors hold NaN")
    assert sorted(p.name for p in tmp_path.iterdir()) == ['half.pth', 'work']  # config and log only
    assert not list((tmp_path / 'work').glob('*.pth'))


def test_whole_pickled_model_gets_an_explanation(env, capsys, unchanged, tmp_path):
    model = _model(env)
    torch.save(model, tmp_path / 'model.pth')
    torch.save({'model': model, 'epoch': 3}, tmp_path / 'yolo_style.pth')
    save_how = re.escape("torch.save({'state_dict': model.state_dict()}, path)")
    one_error(*run(val.main, [*tiny(env), '--checkpoint', tmp_path / 'model.pth'], capsys),
              r"'.*model\.pth' holds a whole pickled model \(models\.pose_estimator\.TopdownPoseEstimator, "
              r'saved with torch\.save\(model\)\)', save_how)
    one_error(*run(val.main, [*tiny(env), '--checkpoint', tmp_path / 'yolo_style.pth'], capsys),
              r"yolo_style\.pth: its 'model' entry is a whole pickled model", save_how)


def test_shape_mismatches_name_the_key_and_the_part(env, bad_checkpoints, capsys, unchanged, tmp_path):
    wide = bad_checkpoints['wide']
    init = f"model.backbone.init_cfg=dict(type='Pretrained', checkpoint='{wide}', prefix='backbone.')"
    width = r'another backbone width or type: check model\.backbone\.widen_factor'
    one_error(*run(train.main, [*tiny(env, init), '--work-dir', tmp_path / 'a'], capsys),
              rf'model\.backbone\.init_cfg\.checkpoint {re.escape(str(wide))}: tensor shapes differ',
              r'backbone\.conv1\.conv\.weight: checkpoint \(24, 3, 3, 3\) vs model \(16, 3, 3, 3\) and '
              r'255 more\)', width)
    one_error(*run(train.main, [*tiny(env, f"load_from='{wide}'"), '--work-dir', tmp_path / 'b'], capsys),
              rf'load_from {re.escape(str(wide))}: tensor shapes differ', width)
    joints = tmp_path / 'joints14.pth'
    save_checkpoint(joints, {'state_dict': _model(env, 'model.head.num_joints=14').state_dict()})
    one_error(*run(val.main, [*tiny(env), '--checkpoint', joints], capsys),
              rf'CHECKPOINT {re.escape(str(joints))}: tensor shapes differ from the model '
              r'\(head\.fc_coord\.weight: checkpoint \(28, 1280\) vs model \(34, 1280\)',
              r'another keypoint count or head: check model\.head \(num_joints')


def test_weights_of_another_input_size_warn(env, capsys, unchanged, tmp_path, monkeypatch):
    # val.py sets up no logger: warnings are 'warning:' lines on stderr (pytest's root handlers hide that)
    monkeypatch.setattr(logging.getLogger('mmpose_clean'), 'hasHandlers', lambda: False)
    cfg = load_config(env.cfg)
    state = build_pose_estimator(cfg.model).state_dict()
    save_checkpoint(tmp_path / 'new.pth', {'state_dict': state, 'meta': {'input_size': [192, 192]}})
    save_checkpoint(tmp_path / 'old.pth', {'state_dict': state, 'meta': {'config': cfg.pretty_text()}})
    for name in ('new.pth', 'old.pth'):
        status, err = run(val.main, [*tiny(env, 'codec.input_size=(192, 256)'), '--checkpoint',
                                     tmp_path / name], capsys)
        warnings = [line for line in err.splitlines() if 'input size' in line]
        assert status == 0 and 'error' not in err and len(warnings) == 1, err
        assert re.fullmatch(rf'warning: CHECKPOINT .*{name} was trained at input size 192x192 \(w x h, from '
                            r"its metadata\), but the config's codec\.input_size is 192x256: "
                            r'.*codec\.input_size=\(192, 192\)',
                            warnings[0]), warnings[0]
        status, err = run(val.main, [*tiny(env), '--checkpoint', tmp_path / name], capsys)
        assert status == 0 and 'input size' not in err, err  # the same size: nothing to say
    torch.save(state, tmp_path / 'bare_coco-256x192.pth')  # no metadata: MMPose's name says height x width
    status, err = run(val.main, [*tiny(env), '--checkpoint', tmp_path / 'bare_coco-256x192.pth'], capsys)
    warned = r'^warning: CHECKPOINT .*bare_coco-256x192\.pth was trained at input size 192x256 \(w x h, ' \
        r"from its file name\), but the config's codec\.input_size is 192x192"
    assert status == 0 and re.search(warned, err, re.M), err


# ------------------------------------------------------------------------------------------ config sections
SECTION_CASES = [  # (entry point, its arguments after the config, what it names)
    ('val', ['--checkpoint', '{ckpt}'], r'val\.py needs val_dataloader \(the validation data\)'),
    ('train', ['--work-dir', '{tmp}/work'], r'train\.py needs train_dataloader \(the training data\)'),
    ('browse_dataset', ['--phase', 'val', '--output-dir', '{tmp}/vis'],
     r'tools/browse_dataset\.py needs val_dataloader \(the validation data\)'),
    ('demo', ['{ckpt}', '--input', '{img}', '--output-root', '{tmp}/out'],
     r'the pose model \(apis\.init_model, the demo\) needs val_dataloader or val_pipeline'),
    ('model_info', [], r'tools/model_info\.py needs codec \(the input size and target encoding\)'),
    ('export_onnx', ['{ckpt}', '--output', '{tmp}/m.onnx'], r'tools/export_onnx\.py needs codec'),
    ('bench_inference', ['{ckpt}'], r'benchmarks/bench_inference\.py needs codec'),
]
SECTION_MAINS = {'val': val.main, 'train': train.main, 'browse_dataset': browse_dataset.main,
                 'demo': demo.main, 'model_info': model_info.main, 'export_onnx': export_onnx.main,
                 'bench_inference': bench_inference.main}


@pytest.mark.parametrize('entry, args, needle', SECTION_CASES, ids=[c[0] for c in SECTION_CASES])
def test_config_missing_a_section_names_it_and_the_command(env, capsys, unchanged, tmp_path, entry, args,
                                                          needle):
    full = load_config(env.cfg)
    sections = ['model'] if entry in ('model_info', 'export_onnx', 'bench_inference') else ['codec', 'model']
    only = tmp_path / 'model_only.py'
    Config({k: full[k] for k in sections}).dump(only)
    fill = dict(ckpt=env.ckpt, tmp=tmp_path, img=env.img)
    argv = [a.format(**fill) for a in args]
    argv = ['none', 'none', only, *argv] if entry == 'demo' else \
        (['--cfg_file', only, '--device', 'cpu', *argv] if entry in ('val', 'train') else [only, *argv])
    defines = rf"which this config does not define \(it defines: {', '.join(sections)}\)"
    one_error(*run(SECTION_MAINS[entry], argv, capsys), rf'{re.escape(str(only))}: {needle}.*{defines}')
    assert [p.name for p in tmp_path.rglob('*') if p.is_file()] == ['model_only.py']


# ------------------------------------------------------------------------------------------ demo
def _demo(env: Env, src, out, *extra) -> list:
    return ['none', 'none', env.cfg, env.ckpt, '--input', src, '--output-root', out, '--device', 'cpu',
            *extra]


def test_demo_mistakes(env, bad_checkpoints, capsys, unchanged, tmp_path):
    one_error(*run(demo.main, _demo(env, tmp_path / 'nothing.jpg', tmp_path / 'out'), capsys),
              r'input not found: .*nothing\.jpg')
    one_error(*run(demo.main, _demo(env, env.truncated, tmp_path / 'out'), capsys),
              rf'{re.escape(str(env.truncated))}.* is a truncated JPEG')
    one_error(*run(demo.main, _demo(env, env.img, env.img.parent), capsys), 'would overwrite the inputs')
    args = _demo(env, env.img, tmp_path / 'out')
    args[3] = str(bad_checkpoints['html'])
    one_error(*run(demo.main, args, capsys), 'an HTML/XML page')
    typo = ['--cfg-options', 'model.test_cfg.flip=1']
    one_error(*run(demo.main, [*_demo(env, env.img, tmp_path / 'out'), *typo], capsys), 'closest: flip_test')
    assert not (tmp_path / 'out' / env.img.name).exists()


@pytest.mark.slow
def test_demo_det_cat_id_outside_the_detectors_classes(env, seeded_rtmdet_tiny, capsys, unchanged, tmp_path):
    det = [str(DET_CFG), str(seeded_rtmdet_tiny)]
    argv = [*det, env.cfg, env.ckpt, '--input', env.img, '--out-dir', tmp_path / 'out', '--device', 'cpu']
    one_error(*run(demo.main, [*argv, '--det-cat-id', '80'], capsys),
              r'--det-cat-id 80 is not a class of the detector: it has 80 classes, 0 to 79')
    assert not (tmp_path / 'out').exists()
    assert demo.main([str(a) for a in (*argv, '--det-cat-id', '79', '--threads', '1')]) == 0
    assert (tmp_path / 'out' / env.img.name).is_file()


def test_a_failed_demo_leaves_no_empty_output_folder(env, capsys, unchanged, tmp_path):
    (tmp_path / 'broken.mp4').write_bytes(b'not a video')
    for src in (env.truncated, tmp_path / 'broken.mp4'):
        out = tmp_path / 'vis_results'
        status, err = run(demo.main, _demo(env, src, out), capsys)
        assert status == 2 and 'Traceback' not in err, err
        assert not out.exists(), list(out.iterdir())


def test_demo_announces_every_write_and_its_threads(env, capsys, unchanged, tmp_path):
    out = tmp_path / 'vis'
    argv = [*_demo(env, env.img, out, '--save-predictions'), '--threads', '1']
    assert demo.main([str(a) for a in argv]) == 0
    printed = capsys.readouterr().out
    assert '1 CPU thread (--threads), device cpu' in printed
    assert f'wrote {out / env.img.name}\n' in printed
    assert f'wrote {out / "results_0.json"} (predictions)' in printed
    assert sorted(p.name for p in out.iterdir()) == [env.img.name, 'results_0.json']


# ------------------------------------------------------------------------------------------ tools
def test_eval_predictions_mistakes(env, capsys, unchanged, tmp_path):
    items = json.loads(env.raw.read_text())
    args = ['--ann-file', env.ann, '--predictions', tmp_path / 'raw.json']
    write(tmp_path / 'raw.json', json.dumps([items[0], dict(items[1], keypoints=[[float('nan'), 1.0]] * 17)]))
    one_error(*run(eval_predictions.main, args, capsys),
              r'raw\.json: predictions\[1\]\.keypoints: non-finite')
    write(tmp_path / 'raw.json', json.dumps([items[0], dict(items[1], keypoint_scores=[float('inf')] * 17)]))
    one_error(*run(eval_predictions.main, args, capsys), r'predictions\[1\]\.keypoint_scores: non-finite')
    write(tmp_path / 'raw.json', json.dumps([items[0], dict(items[1], keypoints=items[1]['keypoints'][:14],
                                                            keypoint_scores=[0.9] * 14)]))
    one_error(*run(eval_predictions.main, args, capsys),
              rf'raw\.json: predictions\[1\]\.keypoints: 14 keypoints but {re.escape(env.ann)} annotates 17')
    write(tmp_path / 'raw.json', '[{"img_id": 1,')
    one_error(*run(eval_predictions.main, args, capsys), r'raw\.json: not a valid JSON file')


def test_tools_announce_every_write(env, capsys, unchanged, tmp_path):
    for flag, value, written in (('--out', tmp_path / 'res.json', tmp_path / 'res.json'),
                                 ('--outfile-prefix', tmp_path / 'coco', tmp_path / 'coco.keypoints.json')):
        argv = ['--ann-file', env.ann, '--predictions', str(env.raw), flag, str(value)]
        assert eval_predictions.main(argv) == 0
        out, err = capsys.readouterr()
        assert 'coco/AP' in json.loads(out)  # stdout: the metrics' JSON line only
        assert re.fullmatch(rf'wrote {re.escape(str(written))} \(\d COCO keypoint results\)\n', err), err
        assert written.is_file()
    convert_checkpoint.main([env.ckpt, '--out', str(tmp_path / 'mm.pth'), '--to', 'mmpose'])
    assert capsys.readouterr().out.startswith(f'wrote {tmp_path / "mm.pth"} (format mmpose, ')
    assert browse_dataset.main([env.cfg, '--out-dir', str(tmp_path / 'vis'), '--n', '1']) == 0
    assert capsys.readouterr().out == f'wrote 1 crops to {tmp_path / "vis"}\n'


def test_metric_refuses_non_finite_predictions(env):
    from datasets.metainfo import parse_pose_metainfo
    from evaluation import CocoMetric
    from utils.errors import DataError
    metric = CocoMetric(ann_file=env.ann)
    metric.dataset_meta = parse_pose_metainfo(dict(from_file='configs/_base_/datasets/coco.py'))
    kpts = np.zeros((1, 17, 2), np.float32)
    kpts[0, 3] = np.nan
    metric.process({'keypoints': kpts, 'keypoint_scores': np.ones((1, 17), np.float32)},
                   {'img_id': np.array([1]), 'id': np.array([7]), 'bbox_score': np.ones(1)})
    with pytest.raises(DataError, match=r'prediction \(img_id 1, id 7\): keypoints holds non-finite'):
        metric.evaluate()


def test_convert_checkpoint_mistakes(env, bad_checkpoints, capsys, unchanged, tmp_path):
    one_error(*run(convert_checkpoint.main, [env.ckpt, env.ckpt, '--to', 'mmpose'], capsys),
              r"DST .*model\.pth' is the input SRC")
    one_error(*run(convert_checkpoint.main, [bad_checkpoints['lfs'], tmp_path / 'out.pth', '--to', 'ours'],
                   capsys), 'git-LFS pointer')
    one_error(*run(convert_checkpoint.main, [tmp_path / 'gone.pth', tmp_path / 'out.pth', '--to', 'ours'],
                   capsys), r"checkpoint file not found: .*gone\.pth")
    assert not (tmp_path / 'out.pth').exists()


def test_export_onnx_mistakes(env, capsys, unchanged, tmp_path):
    one_error(*run(export_onnx.main, [env.cfg, env.ckpt, '--out', env.ckpt], capsys),
              r"argument --out/--output: .*model\.pth: unsupported extension '\.pth'; expected \.onnx")
    one_error(*run(export_onnx.main, [env.cfg, tmp_path / 'gone.pth', '--out', tmp_path / 'm.onnx'],
                   capsys), r'gone\.pth')
    one_error(*run(export_onnx.main, [env.cfg, env.ckpt, '--out', tmp_path / 'm.onnx', '--check-data',
                                      tmp_path / 'gone.json'], capsys), r'gone\.json')
    assert not (tmp_path / 'm.onnx').exists()


def test_export_onnx_failed_check_keeps_the_old_file(env, capsys, monkeypatch, tmp_path):
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    old = write(tmp_path / 'model.onnx', 'the previous export')
    monkeypatch.setattr(export_onnx, 'compare_with_torch', lambda *a, **k: {'output': 1.0})
    status, err = run(export_onnx.main, [env.cfg, env.ckpt, '--output', old, '--check-batch', '1'], capsys)
    line = one_error(status, err, r'export check failed .*model\.onnx was not written', expected=1)
    assert 'atol' in line and old.read_text() == 'the previous export'
    assert [p.name for p in tmp_path.iterdir()] == ['model.onnx']


def test_model_info_and_quantize_mistakes(env, capsys, unchanged, tmp_path):
    one_error(*run(model_info.main, [env.cfg, '--cfg-options', 'model.neck.type=GlobalAvgPooling'], capsys),
              'Did you mean: GlobalAveragePooling', r'config path: model\.neck')
    one_error(*run(quantize.main, [env.cfg, env.ckpt, '--calib-data', env.ann, '--output', env.ann], capsys),
              r"argument --out/--output: .*ann\.json: unsupported extension '\.json'; expected \.onnx")
    pytest.importorskip('onnxruntime.quantization')
    same = ['--out', tmp_path / 'q.onnx', '--float-out', tmp_path / 'q.onnx']
    one_error(*run(quantize.main, [env.cfg, env.ckpt, '--calib-data', env.ann, *same], capsys),
              r"--float-out .*q\.onnx' is the input --out")
    args = [DET_CFG, env.ckpt, '--calib-data', env.ann, '--out', tmp_path / 'q.onnx']
    one_error(*run(quantize.main, args, capsys), 'handles pose models; this is a detector config')


def test_publish_model_and_plot_curves_mistakes(env, bad_checkpoints, capsys, unchanged, tmp_path):
    one_error(*run(publish_model.main, [bad_checkpoints['html'], tmp_path / 'pub.pth'], capsys),
              'HTML/XML page')
    one_error(*run(publish_model.main, [tmp_path / 'gone.pth', tmp_path / 'pub.pth'], capsys), r'gone\.pth')
    assert list(tmp_path.iterdir()) == []
    one_error(*run(plot_curves.main, [tmp_path, '--out', tmp_path / 'c.png'], capsys),
              r'neither results\.csv nor scalars\.json')
    write(tmp_path / 'results.csv', 'epoch,loss\n1,abc\n')
    one_error(*run(plot_curves.main, [tmp_path / 'results.csv', '--out', tmp_path / 'c.png'], capsys),
              r'results\.csv:2: expected numbers')
    write(tmp_path / 'results.csv', 'epoch,loss\n1,0.5\n')
    one_error(*run(plot_curves.main, [tmp_path / 'results.csv', '--out', tmp_path / 'c.bmp'], capsys),
              r"argument --out: .*c\.bmp: unsupported extension '\.bmp'", r'\.png, \.pdf, \.svg')
    assert not (tmp_path / 'c.png').exists() and not (tmp_path / 'c.bmp').exists()


# ------------------------------------------------------------------------------------------ outputs
def test_outputs_get_the_umask_permissions(tmp_path):
    mask = os.umask(0o027)
    try:
        save_checkpoint(tmp_path / 'a.pth', {'state_dict': {'w': torch.zeros(1)}})
        Config(a=1).dump(tmp_path / 'a.py')
    finally:
        os.umask(mask)
    assert (tmp_path / 'a.pth').stat().st_mode & 0o777 == 0o640
    assert (tmp_path / 'a.py').stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.pth', 'a.py']


# ------------------------------------------------------------------------------------------ the helper
def test_debug_flag_and_environment_show_the_traceback(env, capsys, monkeypatch):
    argv = ['--cfg_file', env.root / 'nope.py', '--checkpoint', env.ckpt]
    with pytest.raises(Exception, match='config file not found'):
        run_main(val.main, [*map(str, argv), '--debug'])
    monkeypatch.setenv('MMPOSE_CLEAN_DEBUG', '1')
    with pytest.raises(Exception, match='config file not found'):
        run_main(val.main, [str(a) for a in argv])


def test_internal_errors_keep_their_traceback():
    def broken(argv):
        raise ZeroDivisionError('a bug')

    with pytest.raises(ZeroDivisionError):
        run_main(broken, [])


@pytest.mark.slow
def test_scripts_print_one_line_without_traceback(env, tmp_path):
    """The real command lines (python train.py ..., python tools/x.py ...), in a subprocess."""
    for cmd in ([REPO / 'train.py', *tiny(env, 'train_dataloader.batch_sise=2')],
                [REPO / 'tools' / 'convert_checkpoint.py', env.ckpt, env.ckpt, '--to', 'ours']):
        proc = subprocess.run([sys.executable, *map(str, cmd)], cwd=REPO, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count('\n') == 1 and proc.stderr.startswith('error: '), proc.stderr


def test_every_entry_point_reports_through_run_main():
    scripts = [*REPO.glob('*.py'), *(REPO / 'tools').glob('*.py'), *(REPO / 'benchmarks').glob('*.py')]
    entry_points = [p for p in scripts if "if __name__ == '__main__':" in p.read_text()]
    assert len(entry_points) >= 15
    ending = r"if __name__ == '__main__':\n    cli\.run_main\(main\)\n\Z"
    offenders = [str(p.relative_to(REPO)) for p in entry_points if not re.search(ending, p.read_text())]
    assert offenders == []
