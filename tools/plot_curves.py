"""Compare training runs on one picture: one chart per key, one curve per run.

    python tools/plot_curves.py RUN_DIR [RUN_DIR ...] --keys loss coco/AP --out FILE.png [--legend A B]

RUN_DIR is a work dir of train.py (its results.csv: per-epoch means and metrics; keys missing there come
from its scalars.json: per logged iteration), or one results.csv / scalars.json file (MMPose's
``vis_data/scalars.json`` too). The x axis is the epoch. Drawn with matplotlib; the format follows the
extension of --out: .png, .pdf, .svg (or .jpg).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

from engine.record import run_series
from utils import cli
from utils.logger import plural
from visualization.curves import CHART_FORMATS, Panel, Series, plot_panels


def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument('runs', nargs='+', help='work dirs, results.csv or scalars.json files')
    parser.add_argument('--keys', nargs='+', default=['loss', 'coco/AP'],
                        help='columns / scalars to draw, one chart each (default: loss coco/AP)')
    parser.add_argument('--legend', nargs='+', help='one name per run (default: the run folder names)')
    cli.add_out_argument(parser, cli.output_file(*CHART_FORMATS), metavar='FILE',
                         help=f'chart file to write, its format by its extension: {", ".join(CHART_FORMATS)}')
    parser.add_argument('--cols', type=cli.positive_int, help='charts per row (default: up to 4)')
    args = parser.parse_args(argv)
    if args.legend is not None and len(args.legend) != len(args.runs):
        parser.error(f'--legend needs one name per run ({len(args.runs)}), got {len(args.legend)}')
    names = args.legend or [Path(r).name if Path(r).is_dir() else Path(r).parent.name or r for r in args.runs]
    panels = [Panel(key, [Series(name, *run_series(run, key)) for run, name in zip(args.runs, names)])
              for key in args.keys]
    plot_panels(panels, args.out, cols=args.cols)
    print(f'wrote {args.out}: {", ".join(args.keys)} of {plural(len(args.runs), "run")}')
    return 0


if __name__ == '__main__':
    cli.run_main(main)
