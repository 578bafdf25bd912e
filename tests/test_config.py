"""Config files: _base_ inheritance, _delete_, overrides, dump round trip and error messages."""
import textwrap
from pathlib import Path

import pytest

from utils.config import Config, ConfigError, load_config, parse_cfg_options


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    """Three levels: _base_/runtime.py <- _base_/model.py (+ runtime) <- exp/child.py."""
    write(tmp_path / '_base_/runtime.py', """
        seed = 1
        optim_wrapper = dict(optimizer=dict(type='Adam', lr=1e-3, weight_decay=0.0), clip_grad=None)
        param_scheduler = [dict(type='LinearLR', begin=0, end=500)]
        """)
    write(tmp_path / '_base_/model.py', """
        _base_ = './runtime.py'
        input_size = (192, 192)
        codec = dict(type='RegressionLabel', input_size=input_size)
        model = dict(type='TopdownPoseEstimator',
                     backbone=dict(type='MobileNetV2', widen_factor=1.0, out_indices=(7,)),
                     head=dict(type='RLEHead', in_channels=1280, num_joints=17, decoder=codec))
        """)
    return write(tmp_path / 'exp/child.py', """
        _base_ = ['../_base_/model.py']
        widen = 0.5
        model = dict(backbone=dict(widen_factor=widen),
                     head=dict(_delete_=True, type='SimCCHead', in_channels=1280, out_channels=17))
        optim_wrapper = dict(optimizer=dict(lr=4e-3))
        param_scheduler = [dict(type='CosineAnnealingLR', T_max=10)]
        """)


def test_three_level_chain_merges_child_wins(chain: Path) -> None:
    cfg = Config.fromfile(chain)
    assert cfg.seed == 1
    assert cfg.model.type == 'TopdownPoseEstimator'
    assert cfg.model.backbone == dict(type='MobileNetV2', widen_factor=0.5, out_indices=(7,))
    assert cfg.optim_wrapper.optimizer == dict(type='Adam', lr=4e-3, weight_decay=0.0)
    assert cfg.optim_wrapper.clip_grad is None
    assert cfg.widen == 0.5  # helper variables are kept
    assert cfg.codec.input_size == (192, 192)


def test_delete_replaces_whole_dict(chain: Path) -> None:
    head = Config.fromfile(chain).model.head
    assert head == dict(type='SimCCHead', in_channels=1280, out_channels=17)
    assert '_delete_' not in head


def test_lists_replace_instead_of_merging(chain: Path) -> None:
    cfg = Config.fromfile(chain)
    assert cfg.param_scheduler == [dict(type='CosineAnnealingLR', T_max=10)]


def test_cfg_options_override(chain: Path) -> None:
    cfg = load_config(chain, ['model.backbone.widen_factor=0.75', 'optim_wrapper.optimizer.lr=0.01',
                              'param_scheduler.0.T_max=42', '+new.key=[1, (2, 3)]', '+flag=True',
                              '+name=hello', '+nothing=None'])
    assert cfg.model.backbone.widen_factor == 0.75
    assert cfg.optim_wrapper.optimizer.lr == 0.01
    assert cfg.param_scheduler[0].T_max == 42
    assert cfg.new.key == [1, (2, 3)]
    assert cfg.flag is True and cfg.nothing is None and cfg.name == 'hello'


def test_merge_from_options_dict_value_merges(chain: Path) -> None:
    cfg = Config.fromfile(chain)
    cfg.merge_from_options({'model.backbone': dict(frozen_stages=2)})
    assert cfg.model.backbone.widen_factor == 0.5 and cfg.model.backbone.frozen_stages == 2


def test_dump_round_trip(chain: Path, tmp_path: Path) -> None:
    cfg = load_config(chain, ['model.backbone.widen_factor=0.75'])
    out = tmp_path / 'dump/resolved.py'
    cfg.dump(out)
    again = Config.fromfile(out)
    assert again == cfg
    assert again.model.backbone.out_indices == (7,)


def test_attribute_access_and_errors(chain: Path) -> None:
    cfg = Config.fromfile(chain)
    assert cfg['model']['head'].type == 'SimCCHead'
    with pytest.raises(AttributeError, match='no key'):
        _ = cfg.does_not_exist


def test_missing_file_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='config file not found: .*nope.py'):
        Config.fromfile(tmp_path / 'nope.py')


def test_missing_base_named_with_parent(tmp_path: Path) -> None:
    child = write(tmp_path / 'child.py', "_base_ = ['./missing_base.py']\n")
    with pytest.raises(ConfigError, match=r'missing_base\.py \(named in _base_ of .*child\.py\)'):
        Config.fromfile(child)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    bad = write(tmp_path / 'bad.py', "a = 1\nb = dict(x=1\nc = 3\n")
    with pytest.raises(ConfigError, match=r'bad\.py, line \d'):
        Config.fromfile(bad)


def test_runtime_error_names_file_and_line(tmp_path: Path) -> None:
    bad = write(tmp_path / 'bad_run.py', "a = 1\nb = undefined_name + 1\n")
    with pytest.raises(ConfigError, match=r'bad_run\.py, line 2: NameError'):
        Config.fromfile(bad)


def test_base_cycle_detected(tmp_path: Path) -> None:
    write(tmp_path / 'a.py', "_base_ = './b.py'\nx = 1\n")
    write(tmp_path / 'b.py', "_base_ = './a.py'\ny = 2\n")
    with pytest.raises(ConfigError, match=r'_base_ cycle.*a\.py -> .*b\.py -> .*a\.py'):
        Config.fromfile(tmp_path / 'a.py')


def test_bad_cfg_option_syntax() -> None:
    with pytest.raises(ConfigError, match='KEY=VALUE'):
        parse_cfg_options(['no_equals_sign'])


def test_child_reads_base_values_but_not_base_functions(tmp_path: Path) -> None:
    write(tmp_path / '_base_/model.py', """
        codec = dict(type='RegressionLabel', input_size=(192, 192))
        _private = 3
        model = dict(head=dict(decoder=codec))
        def pipeline(codec):
            return [dict(type='TopdownAffine', input_size=codec['input_size'])]
        """)
    child = write(tmp_path / 'child.py', """
        _base_ = ['./_base_/model.py']
        codec = dict(codec, input_size=(192, 256))
        model = dict(head=dict(decoder=codec))
        val_pipeline = [dict(type='TopdownAffine', input_size=codec['input_size'])]
        has_private = '_private' in dir()
        has_function = 'pipeline' in dir()
        """)
    cfg = Config.fromfile(child)
    assert cfg.codec == dict(type='RegressionLabel', input_size=(192, 256))
    assert cfg.model.head.decoder.input_size == (192, 256)
    assert cfg.val_pipeline == [dict(type='TopdownAffine', input_size=(192, 256))]
    assert cfg.has_private is False  # private names stay in their file
    assert cfg.has_function is False  # configs are data: a function is no value and is not inherited
    assert 'pipeline' not in Config.fromfile(tmp_path / '_base_/model.py')
    assert Config.fromfile(tmp_path / '_base_/model.py').codec.input_size == (192, 192)


def test_base_must_be_a_literal(tmp_path: Path) -> None:
    bad = write(tmp_path / 'bad_base.py', "name = './x.py'\n_base_ = [name]\n")
    with pytest.raises(ConfigError, match=r"_base_ in .*bad_base\.py, line 2 must be a literal"):
        Config.fromfile(bad)


def test_config_argument_positional_or_cfg_file() -> None:
    import argparse

    from utils.cli import add_config_argument

    parser = argparse.ArgumentParser()
    add_config_argument(parser)
    parser.add_argument('--x')
    assert parser.parse_args(['a.py']).config == 'a.py'
    assert parser.parse_args(['--x', '1', 'a.py']).config == 'a.py'
    for flag in ('--cfg_file', '--cfg-file'):
        assert parser.parse_args([flag, 'b.py']).config == 'b.py'
    for argv in ([], ['a.py', '--cfg_file', 'b.py']):  # missing, or given twice
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
    optional = argparse.ArgumentParser()
    add_config_argument(optional, required=False, dest='cfg_file')
    assert optional.parse_args([]).cfg_file is None
    assert optional.parse_args(['--cfg_file', 'c.py']).cfg_file == 'c.py'
