"""Prepare, on a development machine, what a GPU machine without network needs besides the repository.

    python tools/prepare_gpu_bundle.py [--out-dir gpu_bundle] [--python-version 3.12] [--shared DIR]
                                       [--find-links DIR | --no-download] [--force]

It writes one folder (by default ``gpu_bundle/`` in the repository, which git ignores) holding

    wheels/pycocotools-<version>-cp312-...manylinux..._x86_64.whl   the wheel for the GPU machine's CPython
    shared/data/, shared/weights/                                  the sample data and weights (~13 MB)
    MANIFEST.json                                                  Python version, size and SHA-256 per file

and prints what it wrote, with sizes. The wheel is ``pip download``-ed from PyPI (network needed) for
CPython ``--python-version`` on manylinux x86_64, or taken from a local folder of wheels with
``--find-links DIR``; ``--no-download`` leaves it out. The sample data come from ``--shared DIR``
(default ``$MMPOSE_CLEAN_SHARED``, else ``../shared``). The folder is built beside its destination and
renamed into place when complete: an existing folder with the same content is left as it is (a rerun
is a no-op), one with other content is refused unless ``--force`` (then replaced), and a folder this
tool did not write is never replaced. On the GPU machine (README, "GPU check"):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site gpu_bundle/wheels/*.whl
    PYTHONPATH=/tmp/site python3 benchmarks/gpu_check.py --shared gpu_bundle/shared --out-dir OUT_DIR
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import tempfile

from utils import cli
from utils.errors import ArgumentError, ReportedError
from utils.sample_data import REPO_ROOT, SHARED_ENV, shared_dir

WHEEL_PACKAGES = ('pycocotools',)  # what the GPU machine lacks (requirements.txt gives the versions)
PLATFORMS = ('manylinux_2_17_x86_64', 'manylinux2014_x86_64', 'manylinux_2_28_x86_64',
             'manylinux_2_34_x86_64')  # pip takes the first that a release has a wheel for
SHARED_PARTS = ('data', 'weights')
MANIFEST = 'MANIFEST.json'


class BundleError(ReportedError):
    """The wheel could not be obtained, or the sample data are missing."""


def requirement(package: str) -> str:
    """``package``'s line of requirements.txt without its comment (e.g. ``pycocotools>=2.0.8``)."""
    for line in (REPO_ROOT / 'requirements.txt').read_text().splitlines():
        spec = line.split('#')[0].strip()
        if re.match(rf'{re.escape(package)}\b', spec):
            return spec
    return package


def download_wheels(dest: Path, python_version: str, find_links: str | None) -> list[Path]:
    """``pip download`` the :data:`WHEEL_PACKAGES` wheels for CPython ``python_version`` on manylinux
    x86_64 into ``dest`` (from PyPI, or only from ``find_links``); the wheel files."""
    specs = [requirement(p) for p in WHEEL_PACKAGES]
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '--python-version',
           python_version, '--implementation', 'cp', *[a for p in PLATFORMS for a in ('--platform', p)],
           '--dest', str(dest), '--disable-pip-version-check', '--no-input']
    if find_links:
        cmd += ['--no-index', '--find-links', str(Path(find_links).absolute())]
    result = subprocess.run([*cmd, *specs], capture_output=True, text=True, timeout=900)
    source = f'the wheels in {find_links}' if find_links else 'PyPI'
    if result.returncode != 0:
        last = [line for line in result.stderr.splitlines() if line.strip()][-1:] or ['no output']
        offline = '' if find_links else ('; without network, take it from a folder of wheels '
                                         '(--find-links DIR) or leave it out (--no-download)')
        raise BundleError(f'pip could not get {", ".join(specs)} for CPython {python_version} on manylinux '
                          f'x86_64 from {source}: {last[0].strip()}{offline}')
    wheels = sorted(dest.glob('*.whl'))
    tag = f'cp{python_version.replace(".", "")}'
    for package in WHEEL_PACKAGES:
        found = [w for w in wheels if w.name.lower().startswith(f'{package}-')]
        if len(found) != 1 or not (f'-{tag}-' in found[0].name or '-abi3-' in found[0].name) \
                or 'x86_64' not in found[0].name:
            raise BundleError(f'pip gave {[w.name for w in found]} for {package}; expected one CPython '
                              f'{python_version} manylinux x86_64 wheel')
    return wheels


def copy_shared(shared: Path, dest: Path) -> None:
    """Copy ``shared``'s :data:`SHARED_PARTS` (files, links followed) to ``dest``."""
    missing = [part for part in SHARED_PARTS if not (shared / part).is_dir()]
    if missing:
        raise BundleError(f'the sample data folder {shared} has no {"/, ".join(missing)}/ (give --shared DIR '
                          f'or set {SHARED_ENV})')
    for part in SHARED_PARTS:
        shutil.copytree(shared / part, dest / part)


def manifest(folder: Path, python_version: str | None, shared: Path) -> dict:
    """What ``folder`` holds: the Python version its wheels are for, and every file's bytes and SHA-256."""
    files = {}
    for path in sorted(p for p in folder.rglob('*') if p.is_file() and p.name != MANIFEST):
        files[path.relative_to(folder).as_posix()] = {
            'bytes': path.stat().st_size, 'sha256': hashlib.sha256(path.read_bytes()).hexdigest()}
    return {'written_by': 'tools/prepare_gpu_bundle.py', 'python_version': python_version,
            'platforms': list(PLATFORMS), 'shared_from': str(shared), 'files': files}


def same_content(a: dict, b: dict) -> bool:
    return a.get('python_version') == b.get('python_version') and a.get('files') == b.get('files')


def install(tmp: Path, out: Path, force: bool) -> str:
    """Move the complete bundle ``tmp`` to ``out``; what happened ('written', 'replaced', 'unchanged')."""
    if not out.exists():
        tmp.rename(out)
        return 'written'
    old_manifest = out / MANIFEST
    if not old_manifest.is_file():
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
            tmp.rename(out)
            return 'written'
        raise ArgumentError(f'{out} exists and is not a folder this tool wrote (no {MANIFEST}); choose '
                            'another --out-dir')
    old = json.loads(old_manifest.read_text())
    new = json.loads((tmp / MANIFEST).read_text())
    if same_content(old, new):
        shutil.rmtree(tmp)
        return 'unchanged'
    if not force:
        names = {**old['files'], **new['files']}
        differs = sorted(k for k in names if old['files'].get(k) != new['files'].get(k))
        what = (f'its wheels are for Python {old.get("python_version")}, not {new.get("python_version")}'
                if old.get('python_version') != new.get('python_version')
                else f'{len(differs)} files differ, e.g. {differs[0]}')
        raise ArgumentError(f'{out} already holds a different bundle ({what}); give --force to replace it')
    backup = Path(tempfile.mkdtemp(prefix=f'.{out.name}.old-', dir=out.parent))
    backup.rmdir()
    out.rename(backup)
    tmp.rename(out)
    shutil.rmtree(backup)
    return 'replaced'


def size_mb(files: dict, prefix: str) -> tuple[float, int]:
    chosen = [v['bytes'] for k, v in files.items() if k.startswith(prefix)]
    return sum(chosen) / 1e6, len(chosen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out-dir', default=str(REPO_ROOT / 'gpu_bundle'),
                        help='the folder to write (default: gpu_bundle/ in the repository, git-ignored)')
    parser.add_argument('--python-version', default='3.12',
                        help="the GPU machine's CPython version, X.Y (default 3.12)")
    parser.add_argument('--shared', help=f'the sample data folder (default: ${SHARED_ENV}, else ../shared)')
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--find-links', metavar='DIR',
                        help='take the wheel from this folder of wheels instead of PyPI')
    source.add_argument('--no-download', action='store_true', help='no wheel: only the sample data')
    parser.add_argument('--force', action='store_true', help='replace an existing bundle with other content')
    args = parser.parse_args(argv)
    if not re.fullmatch(r'3\.\d{1,2}', args.python_version):
        raise ArgumentError(f'--python-version: expected X.Y such as 3.12, got {args.python_version!r}')
    out = Path(args.out_dir).absolute()
    shared = shared_dir(args.shared)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out.name}.tmp-', dir=out.parent))
    try:
        copy_shared(shared, tmp / 'shared')
        if not args.no_download:
            download_wheels(tmp / 'wheels', args.python_version, args.find_links)
        python_version = None if args.no_download else args.python_version
        content = manifest(tmp, python_version, shared)
        (tmp / MANIFEST).write_text(json.dumps(content, indent=1) + '\n')
        outcome = install(tmp, out, args.force)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    files = content['files']
    total = sum(v['bytes'] for v in files.values()) / 1e6
    print(f'{out}: {outcome} ({len(files)} files, {total:.1f} MB)'
          + (': it already held the same files' if outcome == 'unchanged' else ''))
    for name, entry in files.items():
        if name.startswith('wheels/'):
            print(f'  {name}  {entry["bytes"] / 1e6:.1f} MB  (CPython {args.python_version}, manylinux '
                  'x86_64)')
    if args.no_download:
        print('  no wheel (--no-download): the GPU machine must have pycocotools installed')
    for part in SHARED_PARTS:
        mb, n = size_mb(files, f'shared/{part}/')
        print(f'  shared/{part}/  {n} files, {mb:.1f} MB  (from {shared / part})')
    rel = out.relative_to(REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out
    pip_line = '' if args.no_download else \
        f'  python3 -m pip install -q --no-index --no-deps --target /tmp/site {rel}/wheels/*.whl\n'
    print(f'On the GPU machine, with {rel}/ copied along with the repository:\n{pip_line}'
          f'  {"" if args.no_download else "PYTHONPATH=/tmp/site "}python3 benchmarks/gpu_check.py '
          f'--shared {rel}/shared --out-dir OUT_DIR')
    return 0


if __name__ == '__main__':
    cli.run_main(main)
