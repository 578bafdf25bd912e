"""The package layers (README "Layers"): nothing imports a higher layer or a script, and no cycles.

Every ``import`` of every first-party module is read from the source (function-local ones included;
only the optional ``onnx`` / ``onnxruntime`` packages may be imported lazily, and they are third-party).
The registries of ``utils/registry.py`` import the packages that define their members through importlib,
at their first lookup: a module that imports a registry (``from utils.registry import MODELS``) therefore
imports its ``locations`` too, and those edges are checked like the others (not for cycles: they run
after every import has finished). One registry lookup from below is allowed (:data:`LOOKUPS_FROM_BELOW`);
any other import of that module is checked as usual.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# lower number = lower layer; a package may import its own layer and the layers below it
LAYERS = {
    'utils': 0, 'structures': 0,
    'codec': 1, 'models': 1, 'datasets': 1, 'evaluation': 1, 'optim': 1,
    'visualization': 2,
    'engine': 3,
    'apis': 4, 'deploy': 4,
}
# (module, name it imports from utils.registry) allowed although the registry's members live in a higher
# layer, and why; the module's other imports, registries included, are checked as usual.
LOOKUPS_FROM_BELOW = {
    ('utils.cfg_options', 'find_registered'): 'reads the arguments of the class a config "type" names, in '
                                              'any registry, to check a --cfg-options key; builds nothing',
}
SCRIPT_PACKAGES = ('tools', 'benchmarks')  # entry points: may import anything, nothing imports them
SCRIPTS = {p.stem for p in ROOT.glob('*.py')}  # train, val, topdown_demo_with_mmdet


def _modules() -> dict[str, Path]:
    found = {}
    for package in [*LAYERS, *SCRIPT_PACKAGES]:
        for path in sorted((ROOT / package).rglob('*.py')):
            parts = path.relative_to(ROOT).with_suffix('').parts
            found['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    for name in SCRIPTS:
        found[name] = ROOT / f'{name}.py'
    return found


MODULES = _modules()
FIRST_PARTY = (*LAYERS, *SCRIPT_PACKAGES, *SCRIPTS)


def _registry_locations() -> dict[str, set[str]]:
    """Each public name of utils/registry.py -> the packages that using it imports through importlib: a
    ``Registry(..., locations=(...))`` its locations; a name built from registries (``ALL_REGISTRIES``,
    ``find_registered``) theirs."""
    tree = ast.parse((ROOT / 'utils' / 'registry.py').read_text())
    direct: dict[str, set[str]] = {}
    refers: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            name = node.name
        else:
            continue
        value = node.value if isinstance(node, ast.Assign) else None
        if isinstance(value, ast.Call) and getattr(value.func, 'id', None) == 'Registry':
            locations = next((kw.value for kw in value.keywords if kw.arg == 'locations'), None)
            direct[name] = set(ast.literal_eval(locations)) if locations is not None else set()
        else:
            refers[name] = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} - {name}
    found = dict(direct)
    changed = True
    while changed:  # names built from registries, or from names built from registries
        changed = False
        for name, names in refers.items():
            locations = set().union(*(found.get(n, set()) for n in names))
            if locations - found.get(name, set()):
                found[name] = found.get(name, set()) | locations
                changed = True
    return {name: locations for name, locations in found.items() if locations}


REGISTRY_LOCATIONS = _registry_locations()


def _imports(path: Path, top_level_only: bool = False, allowed: bool = False) -> list[tuple[str, int]]:
    """First-party modules imported by ``path`` (``from a.b import c`` gives ``a.b.c`` when that is a
    module, else ``a.b``), with line numbers; unless ``top_level_only``, also the packages the registries
    it imports load (:data:`REGISTRY_LOCATIONS`), but for the :data:`LOOKUPS_FROM_BELOW` unless
    ``allowed``."""
    module = next(m for m, p in MODULES.items() if p == path)
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f'{node.module}.{alias.name}' if f'{node.module}.{alias.name}' in MODULES
                     else node.module for alias in node.names]
            if node.module == 'utils.registry' and not top_level_only:
                names += sorted(set().union(*(REGISTRY_LOCATIONS.get(a.name, set()) for a in node.names
                                              if allowed or (module, a.name) not in LOOKUPS_FROM_BELOW)))
        else:
            continue
        out += [(name, node.lineno) for name in names if name.split('.')[0] in FIRST_PARTY]
    return out


def _layer(module: str) -> int | None:
    return LAYERS.get(module.split('.')[0])


@pytest.mark.parametrize('module', sorted(m for m in MODULES if _layer(m) is not None))
def test_no_upward_or_script_imports(module: str) -> None:
    own = _layer(module)
    bad = [f'{MODULES[module].relative_to(ROOT)}:{line} imports {name}'
           for name, line in _imports(MODULES[module])
           if _layer(name) is None or _layer(name) > own]
    assert not bad, 'a lower layer imports a higher one or a script:\n' + '\n'.join(bad)


def test_scripts_are_not_imported() -> None:
    bad = [f'{path.relative_to(ROOT)}:{line} imports {name}' for module, path in MODULES.items()
           for name, line in _imports(path) if name.split('.')[0] in (*SCRIPTS, *SCRIPT_PACKAGES)
           and name.split('.')[0] != module.split('.')[0]]
    assert not bad, '\n'.join(bad)


def test_no_import_cycles() -> None:
    """No module-level import chain leads back to where it started (function-local imports that only
    hide a cycle count too: they are checked by the tests above, and deploy keeps none)."""
    graph = {m: sorted({name for name, _ in _imports(p, top_level_only=True) if name in MODULES} - {m})
             for m, p in MODULES.items()}
    done: set[str] = set()

    def visit(m: str, path: list[str]) -> None:
        for d in graph[m]:
            if d in path:
                raise AssertionError('import cycle: ' + ' -> '.join(path[path.index(d):] + [d]))
            if d not in done:
                visit(d, [*path, d])
        done.add(m)

    for m in sorted(graph):
        visit(m, [m])


def test_registries_load_first_party_packages_the_layering_sees():
    """Every registry location is a package of the layers, and the registry lookups are seen: a head that
    builds its codec through CODECS imports codec; the config-option checks (find_registered) import
    every location."""
    assert REGISTRY_LOCATIONS['MODELS'] == {'models'}
    for name, locations in REGISTRY_LOCATIONS.items():
        assert all(loc in MODULES and _layer(loc) is not None for loc in locations), (name, locations)
    assert REGISTRY_LOCATIONS['find_registered'] == set().union(
        *(REGISTRY_LOCATIONS[n] for n in REGISTRY_LOCATIONS if n.isupper() and n != 'ALL_REGISTRIES'))
    assert 'codec' in {name for name, _ in _imports(MODULES['models.heads.regression_head'])}
    upward = {name for name, _ in _imports(MODULES['utils.cfg_options'], allowed=True) if _layer(name) > 0}
    assert {'models', 'optim', 'evaluation'} <= upward  # seen, and allowed only by LOOKUPS_FROM_BELOW
    assert not [name for name, _ in _imports(MODULES['utils.cfg_options']) if _layer(name) > 0]


def test_every_module_logs_under_the_project_logger():
    """``logging.getLogger`` is only called with the project logger's name (utils.logger.LOGGER_NAME) or a
    child of it (``'mmpose_clean.<package>'``), so that every record reaches train.log (once)."""
    bad = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == 'getLogger' and getattr(node.func.value, 'id', None) == 'logging':
                arg = node.args[0] if node.args else None
                name = arg.value if isinstance(arg, ast.Constant) else getattr(arg, 'id', None)
                if not (name == 'LOGGER_NAME' or isinstance(name, str) and name.startswith('mmpose_clean.')):
                    bad.append(f'{path.relative_to(ROOT)}:{node.lineno} logs to {name!r}')
    assert not bad, '\n'.join(bad)
