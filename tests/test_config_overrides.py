"""--cfg-options that take effect: a top-level variable re-evaluates what is built from it, stage 2 left
behind by a stage-1 change is a warning, numbers follow the annotation of the argument they set, repeated
--cfg-options flags add up. The configs under test are children of the shipped recipes written here."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from utils.cli import add_cfg_options_argument
from utils.config import Config, ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
RLE = REPO / 'configs' / 'rle' / 'rle_mbv2-0.5x_aic-coco-192x192.py'
SIMCC_192 = REPO / 'configs' / 'simcc' / 'simcc_mbv2-0.75x-wo-deconv_aic-coco-192x192.py'
SIMCC_256 = REPO / 'configs' / 'simcc' / 'simcc_mbv2-0.75x-wo-deconv_aic-coco-256x192.py'


def child(tmp_path: Path, base: Path, body: str = '', name: str = 'child.py') -> Path:
    path = tmp_path / name
    path.write_text(f'_base_ = [{str(base)!r}]\n{body}')
    return path


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def warnings_logged():
    """The warnings logged on the project logger during the test (whether or not it propagates)."""
    handler, logger = _Collect(), logging.getLogger('mmpose_clean')
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def warnings_of(handler: _Collect) -> list[str]:
    return handler.lines


def pipelines(cfg: Config) -> tuple[list, list, list, list]:
    ds = cfg.train_dataloader.dataset
    return (ds.pipeline, ds.pipeline_stage2, cfg.val_dataloader.dataset.pipeline,
            cfg.test_dataloader.dataset.pipeline)


# ------------------------------------------------------------------------------------- variables
def test_codec_override_reaches_pipelines_head_and_decoder(tmp_path):
    cfg = load_config(child(tmp_path, SIMCC_192, 'model = dict(backbone=dict(init_cfg=None))\n'),
                      ['codec.input_size=(192,256)'])
    assert cfg.codec.input_size == (192, 256)
    head = cfg.model.head
    assert (head.input_size, head.in_featuremap_size) == ((192, 256), (6, 8))
    assert head.decoder.input_size == (192, 256)
    for pipeline in pipelines(cfg):
        affine = next(t for t in pipeline if t.type == 'TopdownAffine')
        assert affine.input_size == (192, 256)
    for pipeline in pipelines(cfg)[:2]:
        assert next(t for t in pipeline if t.type == 'GenerateTarget').encoder == cfg.codec
    # the shipped 256x192 recipe is the 192x192 one at the new size: the override gives the same config
    shipped = Config.fromfile(SIMCC_256)
    again = load_config(SIMCC_192, ['codec.input_size=(192,256)'])
    for key in ('codec', 'model', 'train_dataloader', 'val_dataloader', 'test_dataloader', 'train_pipeline',
                'train_pipeline_stage2', 'val_pipeline'):
        assert again[key] == shipped[key], key


def test_data_root_override_moves_every_dataset_and_the_evaluators(tmp_path):
    cfg = load_config(child(tmp_path, RLE), ['data_root=/elsewhere/'])
    train = cfg.train_dataloader.dataset.datasets
    roots = [train[0].dataset.data_root, train[1].data_root, cfg.val_dataloader.dataset.data_root,
             cfg.test_dataloader.dataset.data_root]
    assert roots == ['/elsewhere/'] * 4
    assert cfg.val_dataloader.dataset.bbox_file.startswith('/elsewhere/coco/')
    assert cfg.val_evaluator.ann_file == cfg.test_evaluator.ann_file == \
        '/elsewhere/coco/annotations/person_keypoints_val2017.json'


def test_override_wins_over_a_child_that_sets_the_variable_itself(tmp_path):
    body = ("data_root = 'mine/'\n"
            "val_evaluator = dict(ann_file=f'{data_root}val.json')\n")
    cfg = load_config(child(tmp_path, RLE, body), ['data_root=cli/'])
    assert cfg.data_root == 'cli/' and cfg.val_evaluator.ann_file == 'cli/val.json'
    assert cfg.val_dataloader.dataset.data_root == 'cli/'  # the bases' entries follow too


def test_max_epochs_variable_versus_the_train_cfg_key(tmp_path):
    path = child(tmp_path, RLE)
    cfg = load_config(path, ['max_epochs=10'])
    assert cfg.train_cfg.max_epochs == 10
    assert [cfg.param_scheduler[1][k] for k in ('begin', 'end', 'T_max')] == [5, 10, 5]
    plain = load_config(path, ['train_cfg.max_epochs=10'])  # an ordinary key: that entry only
    assert plain.train_cfg.max_epochs == 10 and plain.param_scheduler[1].end == 420


def test_base_lr_override_reaches_the_optimizer_and_the_schedule(tmp_path):
    cfg = load_config(child(tmp_path, RLE), ['base_lr=1e-3'])
    assert cfg.optim_wrapper.optimizer.lr == 1e-3
    assert cfg.param_scheduler[1].eta_min == pytest.approx(5e-5)


def test_an_unoverridden_config_is_unchanged_and_ordinary_keys_still_apply(tmp_path):
    path = child(tmp_path, RLE)
    assert load_config(path, []) == Config.fromfile(path)
    cfg = load_config(path, ['val_dataloader.batch_size=4', 'model.backbone.widen_factor=0.75'])
    assert cfg.val_dataloader.batch_size == 4 and cfg.model.backbone.widen_factor == 0.75


@pytest.mark.parametrize('options, message', [
    (['codec.input_sise=(1,2)'], r"codec has no key 'input_sise' \(closest: input_size\)"),
    (['codec.input_size=big'], r"codec\.input_size expects list or tuple .*got 'big'"),
    (['_aic_to_coco=[]'], r"the config has no key '_aic_to_coco'"),
])
def test_variable_overrides_stay_strict(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        load_config(child(tmp_path, RLE), options)


def test_new_key_and_delete_on_a_variable(tmp_path):
    path = child(tmp_path, RLE)
    cfg = load_config(path, ['+codec.use_dark=True'])
    assert cfg.codec.use_dark is True and cfg.model.head.decoder.use_dark is True
    cfg = load_config(path, ["codec=dict(_delete_=True, type='RegressionLabel', input_size=(128, 160))"])
    assert cfg.codec == dict(type='RegressionLabel', input_size=(128, 160))
    assert cfg.train_dataloader.dataset.pipeline[5].input_size == (128, 160)


# ------------------------------------------------------------------------------------------ stage 2
NEW_STAGE1 = ("train_dataloader = dict(dataset=dict(pipeline=[dict(type='LoadImage'), "
              "dict(type='GetBBoxCenterScale'), dict(type='TopdownAffine', input_size=codec['input_size']), "
              "dict(type='GenerateTarget', encoder=codec), dict(type='PackPoseInputs')]{stage2}))\n")


def test_child_changing_stage1_only_is_warned(tmp_path, warnings_logged):
    path = child(tmp_path, RLE, NEW_STAGE1.format(stage2=''))
    Config.fromfile(path)
    (line,) = warnings_of(warnings_logged)
    assert str(path) in line and str(RLE) in line
    assert 'train_dataloader.dataset.pipeline ' in line and 'train_dataloader.dataset.pipeline_stage2' in line
    assert 'last 30 epochs' in line


@pytest.mark.parametrize('body', [
    NEW_STAGE1.format(stage2=', pipeline_stage2=None'),  # stage 2 set too (here: none)
    NEW_STAGE1.format(stage2='') + 'stage2_num_epochs = 0\n',  # no stage 2 at all
    'model = dict(backbone=dict(widen_factor=0.75))\n',  # pipelines untouched
])
def test_no_warning_when_stage2_is_taken_care_of(tmp_path, warnings_logged, body):
    Config.fromfile(child(tmp_path, RLE, body))
    assert warnings_of(warnings_logged) == []


@pytest.mark.parametrize('options, warned', [
    (['train_pipeline.4.rotate_factor=30'], True),
    (['train_dataloader.dataset.pipeline.4.rotate_factor=30'], True),
    (["train_dataloader.dataset=dict(pipeline=[dict(type='LoadImage')])"], True),
    (['train_pipeline.4.rotate_factor=30', 'train_pipeline_stage2.4.rotate_factor=20'], False),
    (['codec.input_size=(160,160)'], False),  # both pipelines follow
    (['train_dataloader.batch_size=4'], False),
])
def test_cfg_options_changing_stage1_only_are_warned(tmp_path, warnings_logged, options, warned):
    load_config(child(tmp_path, RLE), options)
    lines = warnings_of(warnings_logged)
    assert len(lines) == int(warned), lines
    if warned:
        assert f'--cfg-options {options[0].split("=")[0]}' in lines[0]
        assert 'train_dataloader.dataset.pipeline_stage2' in lines[0]


def test_train_pipeline_variable_override_reaches_the_dataloader(tmp_path):
    cfg = load_config(child(tmp_path, RLE), ['train_pipeline.4.rotate_factor=30.5'])
    assert cfg.train_dataloader.dataset.pipeline[4].rotate_factor == 30.5
    assert cfg.train_dataloader.dataset.pipeline_stage2[4].rotate_factor == 60


# ------------------------------------------------------------------------------------------ numbers
@pytest.mark.parametrize('option, value', [
    ('train_dataloader.dataset.pipeline.4.rotate_factor=30.5', 30.5),  # annotation float, current value 80
    ('train_dataloader.dataset.pipeline.4.rotate_factor=30', 30.0),
    ('optim_wrapper.optimizer.lr=1', 1.0),  # a float current value takes an int
    ('model.backbone.frozen_stages=2', 2),  # not in the config: MobileNetV2's annotation decides
    ('train_dataloader.dataset.pipeline.4.scale_factor=(0.5,1.5)', [0.5, 1.5]),  # stays a list
])
def test_numbers_accepted(tmp_path, option, value):
    cfg = load_config(child(tmp_path, RLE), [option])
    got = cfg
    for key in option.split('=')[0].split('.'):
        got = got[int(key)] if isinstance(got, list) else got[key]
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize('option, message', [
    ('train_dataloader.batch_size=8.5', r"train_dataloader\.batch_size expects int \(like its current value "
                                        r"256\), got '8\.5'"),
    ('model.head.num_joints=17.5', r"expects int \(as RLEHead's argument num_joints: int\), got '17\.5'"),
    ('model.backbone.frozen_stages=2.5', r"expects int \(as MobileNetV2's argument frozen_stages: int\)"),
    ('train_dataloader.dataset.pipeline.4.rotate_factor=wide',
     r"expects a number \(as RandomBBoxTransform's argument rotate_factor: float\), got 'wide'"),
])
def test_numbers_refused(tmp_path, option, message):
    with pytest.raises(ConfigError, match=message):
        load_config(child(tmp_path, RLE), [option])


# ------------------------------------------------------------------------------ repeated --cfg-options
def test_repeated_cfg_options_flags_add_up(tmp_path):
    parser = argparse.ArgumentParser()
    add_cfg_options_argument(parser)
    args = parser.parse_args(['--cfg-options', 'max_epochs=10', 'base_lr=1e-3', '--cfg-options',
                              'train_dataloader.batch_size=4'])
    assert args.cfg_options == ['max_epochs=10', 'base_lr=1e-3', 'train_dataloader.batch_size=4']
    assert parser.parse_args([]).cfg_options is None
    cfg = load_config(child(tmp_path, RLE), args.cfg_options)
    assert (cfg.train_cfg.max_epochs, cfg.optim_wrapper.optimizer.lr, cfg.train_dataloader.batch_size) == \
        (10, 1e-3, 4)


def test_train_script_merges_repeated_flags():
    import train

    args = train.parse_args(['CFG', '--cfg-options', 'a=1', '--cfg-options', 'b=2', 'c=3'])
    assert args.cfg_options == ['a=1', 'b=2', 'c=3']


# --------------------------------------------------------------------- MMPose's PipelineSwitchHook
HOOK_FORM = """
stage2_num_epochs = {stage2}
train_dataloader = dict(dataset=dict(pipeline_stage2=None))
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True, priority=49),
    dict(type='mmdet.PipelineSwitchHook', switch_epoch={switch}, switch_pipeline=train_pipeline_stage2),
]
"""


def test_pipeline_switch_hook_reads_as_stage2(tmp_path, warnings_logged):
    from optim.ema import ema_config

    path = child(tmp_path, RLE, HOOK_FORM.format(stage2=10, switch='max_epochs - stage2_num_epochs'))
    cfg = Config.fromfile(path)
    assert cfg.stage2_num_epochs == 10
    assert cfg.train_dataloader.dataset.pipeline_stage2 == cfg.train_pipeline_stage2
    assert [h.type for h in cfg.custom_hooks] == ['EMAHook']
    assert ema_config(cfg)['type'] == 'ExpMomentumEMA'
    same = load_config(child(tmp_path, RLE, name='plain.py'), ['stage2_num_epochs=10'])
    assert {k: v for k, v in cfg.items() if k != 'custom_hooks'} == same
    assert warnings_of(warnings_logged) == []
    # a child changing only the stage-1 pipeline of the hook form is warned about too
    grandchild = child(tmp_path, path, NEW_STAGE1.format(stage2=''), name='grandchild.py')
    Config.fromfile(grandchild)
    (line,) = warnings_of(warnings_logged)
    assert str(grandchild) in line and f'(set in {path})' in line


@pytest.mark.parametrize('stage2, switch, message', [
    (30, 'max_epochs - 10', r'switch_epoch=410\) and stage2_num_epochs = 30 .* differently; keep one'),
    (None, 'max_epochs + 1', r'switch_epoch = 421 must be a whole number from 0 to train_cfg\.max_epochs'),
])
def test_pipeline_switch_hook_conflicts_are_errors(tmp_path, stage2, switch, message):
    with pytest.raises(ConfigError, match=message):
        Config.fromfile(child(tmp_path, RLE, HOOK_FORM.format(stage2=stage2, switch=switch)))


def test_inference_api_config_follows_a_variable_override(tmp_path):
    from apis.inputs import as_config  # what the demo loads its pose config with

    cfg = as_config(child(tmp_path, RLE), 'pose config', ['codec.input_size=(128,160)'])
    assert cfg.val_dataloader.dataset.pipeline[2].input_size == (128, 160)
    assert cfg.model.head.decoder.input_size == (128, 160)


def test_stage2_warning_before_logging_is_set_up_is_one_stderr_line(tmp_path, monkeypatch, capsys):
    # scripts load their config before they set up the project logger (pytest's root handlers hide that)
    monkeypatch.setattr(logging.getLogger('mmpose_clean'), 'hasHandlers', lambda: False)
    load_config(child(tmp_path, RLE), ['train_pipeline.4.rotate_factor=30'])
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith('warning: --cfg-options train_pipeline.4.rotate_factor changes ')
