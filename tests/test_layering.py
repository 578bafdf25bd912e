"""The package layers (README "Layers"): nothing imports a higher layer or a script, and no cycles.

Every ``import`` of every first-party module is read from the source (function-local ones included;
only the optional ``onnx`` / ``onnxruntime`` packages may be imported lazily, and they are third-party).
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
    'engine': 2,
    'apis': 3, 'deploy': 3,
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


def _imports(path: Path, top_level_only: bool = False) -> list[tuple[str, int]]:
    """First-party modules imported by ``path`` (``from a.b import c`` gives ``a.b.c`` when that is a
    module, else ``a.b``), with line numbers."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f'{node.module}.{alias.name}' if f'{node.module}.{alias.name}' in MODULES
                     else node.module for alias in node.names]
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
