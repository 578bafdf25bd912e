"""Every shipped config resolves to the content recorded in tests/data/resolved_configs.txt.

The reference was written from the configs before they were restructured to inherit instead of
repeating (issue 17); reorganising configs must not change what any of them means. Helper variables
that no code reads (pipelines built in a config, sub-dataset dicts) may disappear: ``HELPERS``.
Regenerate after an intended change of meaning with ``python -m tests.test_config_resolved``.
"""
from __future__ import annotations

import ast
import pprint
import sys
from pathlib import Path

import pytest

from utils.config import Config

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / 'tests' / 'data' / 'resolved_configs.txt'
# top-level helper variables of the old configs that nothing reads; they may be absent now
HELPERS = {'train_pipeline', 'train_pipeline_stage2', 'val_pipeline', 'dataset_coco', 'dataset_aic',
           'sample_coco'}


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


if __name__ == '__main__':
    REFERENCE.write_text(pprint.pformat(resolve_all(), width=110, sort_dicts=True) + '\n')
    sys.stdout.write(f'wrote {REFERENCE}\n')
