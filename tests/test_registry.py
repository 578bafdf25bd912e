"""Registry: registration, nested builds, helpful errors, and no mutation of the caller's config."""
import copy

import pytest

from utils.registry import Registry, RegistryError

REG = Registry('toy')


@REG.register_module()
class Leaf:
    def __init__(self, size: int = 1) -> None:
        self.size = size


@REG.register_module(name='Box')
class Container:
    def __init__(self, inner: dict, items: list | None = None) -> None:
        self.inner = REG.build(inner)
        self.items = [REG.build(c) for c in items or []]


def test_build_with_default_args() -> None:
    leaf = REG.build(dict(type='Leaf'), size=3)
    assert leaf.size == 3
    assert REG.build(dict(type='Leaf', size=5), size=3).size == 5


def test_nested_build_and_cfg_untouched() -> None:
    cfg = dict(type='Box', inner=dict(type='Leaf', size=2), items=[dict(type='Leaf')])
    before = copy.deepcopy(cfg)
    box = REG.build(cfg)
    assert isinstance(box, Container) and box.inner.size == 2 and box.items[0].size == 1
    assert cfg == before


def test_unknown_type_names_registry_close_matches_and_path() -> None:
    cfg = dict(type='Box', inner=dict(type='Leaf'), items=[dict(type='Leaf'), dict(type='Leef')])
    with pytest.raises(RegistryError) as info:
        REG.build(cfg, cfg_path='model')
    msg = str(info.value)
    assert "'Leef' is not registered in the toy registry" in msg
    assert 'Did you mean: Leaf' in msg
    assert 'config path: model.items[1]' in msg


def test_missing_type_and_bad_args() -> None:
    with pytest.raises(RegistryError, match='no "type" key'):
        REG.build(dict(size=1))
    with pytest.raises(TypeError, match=r"toy Leaf: got an unexpected keyword .*'colour'.* arguments: size"):
        REG.build(dict(type='Leaf', colour='red'))
    with pytest.raises(RegistryError, match=r"Did you mean: size\?.*config path: model.items\[0\]"):
        REG.build(dict(type='Box', inner=dict(type='Leaf'), items=[dict(type='Leaf', sise=2)]),
                  cfg_path='model')


def test_duplicate_registration_refused() -> None:
    with pytest.raises(RegistryError, match='already registered'):
        REG.register_module(name='Leaf', module=Container)


def test_project_registries_import_their_packages() -> None:
    from utils.registry import CODECS, MODELS
    assert MODELS.locations == ('models',) and CODECS.name == 'codec'
