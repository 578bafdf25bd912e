"""Convert a checkpoint between MMPose's, the original MMPose_Clean project's and this project's layout.

    python tools/convert_checkpoint.py SRC DST --to {mmpose,original,ours}
    python tools/convert_checkpoint.py SRC --out DST.pth --to {mmpose,original,ours}

- ``mmpose``: ``{'state_dict', 'meta'}`` with MMPose 1.3.2 names (loads with MMPose's ``load_checkpoint``);
- ``original``: a bare state dict with the original project's names;
- ``ours``: ``{'state_dict', 'meta'}`` with this project's names and format marker.
The source format is detected from its keys; tensors are only renamed (the RLE head's ``fc`` is split
into / merged from ``fc_coord`` and ``fc_sigma`` row by row), never changed. The tool reads no config,
so it has no ``--cfg-options``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import argparse

from models.checkpoints import (
    convert_checkpoint,
    detect_format,
    detect_naming,
    read_checkpoint,
    save_checkpoint,
    state_dict_of,
)
from models.checkpoints.model_zoo import resolve_checkpoint
from utils import cli
from utils.output_files import refuse_input_as_output


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument('src', metavar='CHECKPOINT',
                        help='checkpoint to read: a file (.pth), a work dir, a model-zoo name or a URL')
    cli.add_out_argument(parser, cli.output_file(*('.pth', '.pt')), positional='DST', metavar='DST.pth',
                         help='checkpoint file to write (.pth or .pt; replaced atomically)')
    parser.add_argument('--to', required=True, choices=('mmpose', 'original', 'ours'),
                        help='layout of the written checkpoint')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.src = str(resolve_checkpoint(args.src))
    refuse_input_as_output(args.out, {'SRC': args.src}, 'DST')
    checkpoint = read_checkpoint(args.src)
    fmt, naming = detect_format(checkpoint), detect_naming(state_dict_of(checkpoint, args.src))
    payload, mark = convert_checkpoint(checkpoint, args.to)
    save_checkpoint(args.out, payload, mark=mark)
    count = len(payload['state_dict'] if isinstance(payload.get('state_dict'), dict) else payload)
    print(f'wrote {args.out} (format {args.to}, {count} tensors) from {args.src} (format {fmt}, naming '
          f'{naming or "neutral"})')


if __name__ == '__main__':
    cli.run_main(main)
