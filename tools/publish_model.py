"""Publish a trained model: keep only its weights and metadata, and name the file with its SHA-256 prefix.

    python tools/publish_model.py CHECKPOINT OUT.pth      (or --out OUT.pth)

CHECKPOINT is a training checkpoint (this project's last.pth / best.pth, an MMPose / mmengine run's
epoch_N.pth, ...), a work dir (its best.pth, else last.pth), a model-zoo name or a URL. The optimizer,
schedulers, AMP scaler, EMA copy, RNG states, message hub and everything else but ``state_dict`` and
``meta`` are dropped (metadata entries that hold objects of unknown classes too). The result is written
as ``OUT-<first 8 hex digits of its SHA-256>.pth`` (MMPose's publish_model naming, which the model zoo and
URL downloads check); the tensors are not changed.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import os
from collections.abc import Mapping
from typing import Any

import torch

from models.checkpoints import detect_format, read_checkpoint, save_checkpoint, state_dict_of
from models.checkpoints.model_zoo import add_checkpoint_argument, resolve_checkpoint, sha256_of
from models.checkpoints.unpickler import Placeholder
from utils import cli


def _plain(value: Any) -> bool:
    """True when ``value`` holds no placeholder of an unknown class (it then loads weights-only)."""
    if isinstance(value, Placeholder):
        return False
    if isinstance(value, Mapping):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return all(_plain(v) for v in value)
    return True


def publish(src: str | os.PathLike, out: str | os.PathLike) -> tuple[Path, list[str]]:
    """Write the published copy of checkpoint ``src`` next to ``out``; returns (its path, dropped keys).

    The file is written under a temporary name, hashed, and renamed to ``<out stem>-<sha256[:8]>.pth``.
    """
    checkpoint = read_checkpoint(src)
    state_dict = state_dict_of(checkpoint, str(src))
    bare = all(isinstance(v, torch.Tensor) for v in checkpoint.values())  # the state dict itself
    meta = None if bare else checkpoint.get('meta')
    meta = {k: v for k, v in meta.items() if _plain(v)} if isinstance(meta, Mapping) else {}
    dropped = [] if bare else [k for k in checkpoint if k not in ('state_dict', 'model', 'meta')]
    out = Path(out)
    stem = out.name[:-len('.pth')] if out.name.endswith('.pth') else out.name
    tmp = out.with_name(f'.{stem}.publish.tmp')
    try:
        mark = detect_format(checkpoint) == 'ours'
        save_checkpoint(tmp, {'state_dict': state_dict, 'meta': meta}, mark=mark)
        final = out.with_name(f'{stem}-{sha256_of(tmp)[:8]}.pth')
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final, dropped


def main(argv: list[str] | None = None) -> Path:
    parser = cli.ArgumentParser(description=__doc__)
    add_checkpoint_argument(parser, help='the trained checkpoint: a file, a work dir, a model-zoo name or '
                            'a URL')
    cli.add_out_argument(parser, cli.output_file(), positional='OUT.pth', metavar='OUT.pth',
                         help='output name; the file written is OUT-<sha256 prefix>.pth in the same folder')
    args = parser.parse_args(argv)
    final, dropped = publish(resolve_checkpoint(args.checkpoint), args.out)
    print(f'dropped {", ".join(dropped) or "nothing"}; wrote {final} (sha256 {sha256_of(final)})')
    return final


if __name__ == '__main__':
    cli.run_main(main)
