"""COCO keypoint AP of saved predictions, without a model.

    python tools/eval_predictions.py --ann-file ANN.json --predictions PRED.json \
        [--score-mode bbox_keypoint] [--nms-mode oks_nms] [--nms-thr 0.9] [--keypoint-score-thr 0.2] \
        [--use-area | --no-use-area] [--metainfo configs/_base_/datasets/coco.py] \
        [--out RESULTS.json] [--cfg-options KEY=VALUE ...]

PRED.json is either the per-instance predictions file that ``val.py --dump`` writes, a JSON list of
{"img_id", "id", "category_id" (default 1), "keypoints": [[x, y], ...] (image px),
"keypoint_scores": [...], "bbox": [x, y, w, h] (optional), "bbox_score" (default 1), "area" (optional,
the OKS-NMS area)}, rescored and reduced by OKS NMS here as in val.py (format: evaluation/prediction_file.py);
or COCO keypoint results, a list of {"image_id", "category_id", "keypoints": [x, y, score] * K, "score"}
(e.g. CocoMetric's outfile_prefix.keypoints.json), evaluated as they are. Prints the metrics as one JSON
line ({"coco/AP": ..., ...}) on stdout. --out writes the final COCO keypoint results (after rescoring
and NMS; ``--outfile-prefix PREFIX``, CocoMetric's spelling, writes PREFIX.keypoints.json), announced on
stderr. --cfg-options overrides CocoMetric arguments (e.g. pred_converter=...).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import argparse
import json

from datasets.metainfo import parse_pose_metainfo
from evaluation.coco_eval import num_annotated_keypoints
from evaluation.coco_metric import NMS_MODES, SCORE_MODES, CocoMetric, write_coco_results
from evaluation.prediction_file import COCO_RESULTS, PredictionFileError, read_predictions
from utils import cli
from utils.config import Config, parse_cfg_options


def check_keypoint_count(path: str, records: list[dict], ann_file: str, num_keypoints: int | None) -> None:
    """Refuse the first record whose keypoint count differs from the annotation file's, naming both."""
    for i, rec in enumerate(records):
        if num_keypoints is not None and len(rec['keypoints']) != num_keypoints:
            raise PredictionFileError(f'{path}: predictions[{i}].keypoints: {len(rec["keypoints"])} '
                                      f'keypoints but {ann_file} annotates {num_keypoints} per instance')


class OutfilePrefix(argparse.Action):
    """``--outfile-prefix PREFIX`` (CocoMetric's spelling): ``--out PREFIX.keypoints.json``."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, cli.output_file('.json')(f'{values}.keypoints.json'))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument('--ann-file', required=True,
                        type=cli.input_file('a COCO keypoint annotation .json file'),
                        help='COCO keypoint annotation JSON (the ground truth)')
    parser.add_argument('--predictions', required=True, type=cli.input_file('a predictions .json file'),
                        help='val.py --dump file or COCO keypoint results JSON (see above)')
    parser.add_argument('--score-mode', default='bbox_keypoint', choices=SCORE_MODES,
                        help='instance rescoring of per-instance predictions (default bbox_keypoint)')
    parser.add_argument('--nms-mode', default='oks_nms', choices=NMS_MODES,
                        help='per-image NMS of per-instance predictions (default oks_nms)')
    parser.add_argument('--nms-thr', type=cli.unit_float, default=0.9,
                        help='OKS threshold of the NMS, 0 to 1 (default 0.9)')
    parser.add_argument('--keypoint-score-thr', type=cli.unit_float, default=0.2,
                        help='keypoints scoring below are left out of the rescoring, 0 to 1 (default 0.2)')
    parser.add_argument('--use-area', action=argparse.BooleanOptionalAction, default=True,
                        help="use the annotations' area for OKS (--no-use-area: 0.53 * bbox area)")
    parser.add_argument('--metainfo', default='configs/_base_/datasets/coco.py',
                        help='dataset_info config giving the keypoints and OKS sigmas')
    cli.add_out_argument(parser, cli.output_file('.json'), required=False, metavar='RESULTS.json',
                         help='also write the final COCO keypoint results (after rescoring and NMS) here')
    parser.add_argument('--outfile-prefix', dest='out', action=OutfilePrefix, metavar='PREFIX',
                        help='the same as --out PREFIX.keypoints.json (CocoMetric\'s outfile_prefix)')
    cli.add_cfg_options_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config(type='CocoMetric', ann_file=args.ann_file, score_mode=args.score_mode,
                 nms_mode=args.nms_mode, nms_thr=args.nms_thr, keypoint_score_thr=args.keypoint_score_thr,
                 use_area=args.use_area, outfile_prefix=None)
    cfg.merge_from_options(parse_cfg_options(args.cfg_options))
    metric = CocoMetric(**{k: v for k, v in cfg.to_dict().items() if k != 'type'})
    metric.dataset_meta = parse_pose_metainfo(dict(from_file=args.metainfo))
    kind, records = read_predictions(args.predictions)
    if kind == COCO_RESULTS:
        final = metric.evaluate_coco_results(records)
        metrics = {f'{metric.prefix}/{k}': float(v) for k, v in final.items()}
    else:
        if metric.coco_data is not None and metric.pred_converter is None:
            check_keypoint_count(args.predictions, records, args.ann_file,
                                 num_annotated_keypoints(metric.coco_data))
        metric.results = records
        metrics = metric.evaluate()
    print(json.dumps(metrics))
    written = [args.out] if args.out else []
    if args.out:
        write_coco_results(metric.coco_results, args.out)
    if metric.outfile_prefix:  # --cfg-options outfile_prefix=PREFIX: CocoMetric wrote it
        written.append(f'{metric.outfile_prefix}.keypoints.json')
    for path in written:  # on stderr: stdout holds the metrics' JSON line only
        print(f'wrote {path} ({len(metric.coco_results)} COCO keypoint results)', file=sys.stderr)
    return 0


if __name__ == '__main__':
    cli.run_main(main)
