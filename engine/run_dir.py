"""Where a training run writes and what it continues from: default work-dir names that never collide, the
newest run of a config, the checkpoint ``--resume`` points at, a run that has already finished, and the
exact command that resumes an interrupted run.

Default work dirs are ``work_dirs/<YYYYmmddHHMMSS>_<config name>``; a second run started in the same second
gets ``..._2`` (then ``_3``, ...), as Ultralytics numbers its runs. The folder is claimed with one
``mkdir``, so two runs started together never share it.
"""
from __future__ import annotations

import itertools
import os
import re
import shlex
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from models.checkpoints import CheckpointError, read_checkpoint
from utils.errors import ArgumentError

WORK_DIRS = Path('work_dirs')
RESUME_KEYS = ('state_dict', 'optimizer', 'epoch', 'iter', 'best')  # what checkpoint_payload writes


def new_work_dir(name: str, root: Path = WORK_DIRS) -> Path:
    """Create and return ``root/<YYYYmmddHHMMSS>_<name>``, or ``..._<name>_2``, ``_3``, ... when a run
    started in the same second already holds that name."""
    stamp = f'{datetime.now():%Y%m%d%H%M%S}'
    root.mkdir(parents=True, exist_ok=True)
    for number in itertools.count(1):
        path = root / (f'{stamp}_{name}' if number == 1 else f'{stamp}_{name}_{number}')
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise AssertionError('unreachable')


def latest_run(name: str, root: Path = WORK_DIRS) -> Path | None:
    """The newest default work dir of config ``name`` that holds a ``last.pth`` (by stamp, then number;
    minute stamps of older runs count as second 00), or None."""
    pattern = re.compile(rf'(\d{{12}}|\d{{14}})_{re.escape(name)}(?:_(\d+))?')
    runs = []
    for folder in root.iterdir() if root.is_dir() else ():
        match = pattern.fullmatch(folder.name)
        # '<stamp>_<name>_2' may also be the first run of a config named '<name>_2': its config decides
        if match and (folder / 'last.pth').is_file() and (
                match.group(2) is None or (folder / f'{name}.py').is_file()):
            runs.append((match.group(1).ljust(14, '0'), int(match.group(2) or 1), folder))
    return max(runs)[2] if runs else None


def resolve_run(cfg_file: str, work_dir: str | None, resume: str | None, resume_ckpt: str | None = None,
                cfg_resume: bool = False) -> tuple[Path, str | None]:
    """(work dir, checkpoint to resume from or None) of a training run, from train.py's arguments.

    Args:
        cfg_file: the config file (its stem names default work dirs).
        work_dir: ``--work-dir`` or None.
        resume: ``--resume``: None, ``'auto'`` (the work dir's ``last.pth``; without ``--work-dir`` the
            newest run of this config), a work dir (its ``last.pth``) or a checkpoint file; the run
            continues in that work dir (the file's folder) unless ``--work-dir`` names another.
        resume_ckpt: the original project's ``--resume_ckpt``: a work dir or a checkpoint in one.
        cfg_resume: the config's ``resume = True`` (as ``--resume`` alone).

    A new run without ``--work-dir`` gets a new folder (:func:`new_work_dir`, created here).

    Raises:
        ArgumentError: ``--resume`` names a work dir without ``last.pth``, or neither a file nor a folder.
    """
    name = Path(cfg_file).stem
    resume = resume or ('auto' if cfg_resume else None)
    if resume not in (None, 'auto') and not Path(resume).exists():
        raise ArgumentError(f'--resume {resume}: neither a checkpoint file nor a work dir')
    if resume_ckpt:
        given = Path(resume_ckpt)
        folder, resume = (given, 'auto') if given.is_dir() else (given.parent, str(given))
    elif resume not in (None, 'auto'):  # a work dir or a checkpoint file: the run continues in its folder
        if Path(resume).is_dir():
            if not (Path(resume) / 'last.pth').is_file():
                held = sorted(p.name for p in Path(resume).glob('*.pth'))
                raise ArgumentError(f'--resume {resume}: that work dir holds no last.pth (nothing to resume'
                                    f'{"; it holds " + ", ".join(held) if held else ""})')
            resume = str(Path(resume) / 'last.pth')
        folder = Path(work_dir or Path(resume).parent)
    elif work_dir:
        folder = Path(work_dir)
    else:
        folder = (resume == 'auto' and latest_run(name)) or new_work_dir(name)
    if resume == 'auto':
        resume = str(folder / 'last.pth') if (folder / 'last.pth').is_file() else None
    return folder, resume


def read_resume_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The training state saved in ``path`` (``engine.checkpoint_payload``), read to the CPU.

    Raises:
        CheckpointError: the file holds weights only (a published or foreign checkpoint), naming what is
            missing and ``load_from`` as the way to start from its weights.
    """
    checkpoint = read_checkpoint(path, map_location='cpu')  # restore() copies onto the device
    missing = [key for key in RESUME_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f'--resume {path}: not a training checkpoint of this project (no '
                              f'{", ".join(missing)}); to start a new run from its weights, pass '
                              f'--cfg-options load_from={path}')
    return checkpoint


def finished_message(checkpoint: dict[str, Any], path: str | os.PathLike, max_epochs: int) -> str | None:
    """A line saying that the run whose ``checkpoint`` (read from ``path``) has trained ``max_epochs``
    epochs is finished, with its best metric and where its checkpoints are; None while epochs remain."""
    epoch = int(checkpoint['epoch'])
    if epoch < max_epochs:
        return None
    folder = Path(path).parent
    best = checkpoint.get('best') or {}
    if best.get('score') is not None:
        where = f' ({folder / "best.pth"})' if (folder / 'best.pth').is_file() else ''
        result = f'best {best.get("key")} = {best["score"]:.4f} at epoch {best.get("epoch")}{where}'
    else:
        result = 'no validation metric recorded'
    return (f'{folder} holds a finished run: epoch {epoch} of {max_epochs} (train_cfg.max_epochs), {result}; '
            f'nothing to train. To train longer, add --cfg-options train_cfg.max_epochs=N (N > {epoch})')


_DROPPED = {'--work-dir': 1, '--work_dir': 1, '--resume_ckpt': 1, '--resume-ckpt': 1, '--overwrite': 0}


def _option(token: str, options: list[str]) -> str | None:
    """The option of ``options`` that ``token`` (``--name``, ``--name=value`` or an unambiguous prefix, as
    argparse accepts) stands for, else None."""
    name = token.split('=', 1)[0]
    if not name.startswith('--') or len(name) < 3:
        return None
    if name in options:
        return name
    found = [o for o in options if o.startswith(name)]
    return found[0] if found else None


def resume_command(argv: list[str], work_dir: Path, resume_value: str | None, world_size: int = 1,
                   resume: bool = True) -> str:
    """The shell command that continues this run: train.py's arguments ``argv`` as given, without
    ``--work-dir``, ``--resume``, ``--resume_ckpt`` and ``--overwrite``, plus ``--work-dir WORK_DIR``
    and (with ``resume``) ``--resume``. ``resume_value`` is the value ``--resume`` took, if any.
    Several processes get ``torchrun --nproc_per_node N`` (and ``--nnodes``) in front."""
    kept: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        option = _option(token, [*_DROPPED, '--resume'])
        if option is None:
            kept.append(token)
        elif '=' not in token and option == '--resume':
            following = next(tokens, None)
            if following is not None and following != resume_value:
                kept.append(following)  # --resume took no value: the next token is someone else's
        elif '=' not in token:
            for _ in range(_DROPPED[option]):
                next(tokens, None)
    script = sys.argv[0] if Path(sys.argv[0]).name == 'train.py' else 'train.py'
    if world_size > 1:
        local = int(os.environ.get('LOCAL_WORLD_SIZE', world_size))
        nodes = [f'--nnodes={world_size // local}'] if local < world_size else []
        launcher = ['torchrun', *nodes, f'--nproc_per_node={local}']
    else:
        launcher = ['python']
    where = ['--work-dir', str(work_dir)] + (['--resume'] if resume else [])
    return shlex.join([*launcher, script, *kept, *where])
