"""Every shipped config resolves to the content recorded in tests/data/resolved_configs.txt.

The reference was written from the configs before they were restructured to inherit instead of
repeating (issue 17); reorganising configs must not change what any of them means. Helper variables
that no code reads (sub-dataset dicts) may disappear: ``HELPERS``.
Regenerate after an intended change of meaning with ``python -m tests.test_config_resolved``.
"""
from __future__ import annotations

import ast
import logging
import pprint
import sys
from pathlib import Path

import pytest

from utils.config import Config

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / 'tests' / 'data' / 'resolved_configs.txt'
# top-level helper variables of the old configs that nothing reads; they may be absent now. The pipeline
# variables (train_pipeline, train_pipeline_stage2, val_pipeline) are compared like every other key.
HELPERS = {'dataset_coco', 'dataset_aic', 'sample_coco'}


def config_files() -> list[Path]:
    """Every config a user can run (``_base_`` fragments excluded), sorted."""
    return sorted(p for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)


def resolve(path: Path) -> dict:
    """The resolved content of one config as plain Python values."""
    return Config.fromfile(path).to_dict()


def resolve_all() -> dict[str, dict]:
    return {p.relative_to(ROOT).as_posix(): resolve(p) for p in config_files()}


def load_reference() -> dict[str, dict]:
    return ast.literal_eval(REFERENCE.read_text())


def test_reference_lists_every_config() -> None:
    assert sorted(load_reference()) == [p.relative_to(ROOT).as_posix() for p in config_files()]


@pytest.mark.parametrize('path', config_files(), ids=lambda p: p.name)
def test_config_resolves_to_reference(path: Path) -> None:
    expected = {k: v for k, v in load_reference()[path.relative_to(ROOT).as_posix()].items()
                if k not in HELPERS}
    got = resolve(path)
    assert {k: v for k, v in got.items() if k not in HELPERS} == expected
    # same types too (tuples stay tuples): compare the printed forms
    assert pprint.pformat({k: got[k] for k in expected}) == pprint.pformat(expected)


# configs are data (MMPose's form): values, dicts, lists, arithmetic and f-strings; no function is defined
# or called but these builtins
DATA_CALLS = {'dict', 'list', 'tuple'}


def test_configs_define_and_call_no_functions() -> None:
    found = []
    for path in sorted((ROOT / 'configs').rglob('*.py')):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.Import,
                                 ast.ImportFrom)):
                found.append(f'{path.relative_to(ROOT)}:{node.lineno} {type(node).__name__}')
            elif isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name)
                                                     and node.func.id in DATA_CALLS):
                found.append(f'{path.relative_to(ROOT)}:{node.lineno} calls {ast.unparse(node.func)}')
    assert not found


def test_recipes_show_their_pipelines(caplog) -> None:
    """Each pose recipe has train_pipeline (train_pipeline_stage2 with a stage 2) and val_pipeline as lists
    of dicts, which are what its dataloaders use; loading it warns about nothing."""
    for path in config_files():
        logger = logging.getLogger('mmpose_clean')
        logger.addHandler(caplog.handler)
        try:
            cfg = Config.fromfile(path)
        finally:
            logger.removeHandler(caplog.handler)
        if 'train_dataloader' not in cfg:
            continue  # a detector: inference only
        train = cfg.train_dataloader.dataset
        assert cfg.train_pipeline == train.pipeline
        assert cfg.val_pipeline == cfg.val_dataloader.dataset.pipeline
        assert cfg.get('train_pipeline_stage2') == train.get('pipeline_stage2')
        assert all(isinstance(t, dict) and 'type' in t for t in [*cfg.train_pipeline, *cfg.val_pipeline])
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


if __name__ == '__main__':
    REFERENCE.write_text(pprint.pformat(resolve_all(), width=110, sort_dicts=True) + '\n')
    sys.stdout.write(f'wrote {REFERENCE}\n')
